// Measuring helpers for `skesl store bench` (figures, never assertions): page-cache
// eviction so reads hit the disk, sequential read speed, peak RSS, and a timed loader run.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum StoreBench {
    /// Asks the kernel to drop the file's cached pages (clean pages only: fsync first).
    public static func evict(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        fsync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }

    public static func evictStore(_ dir: String) throws {
        let m = try Manifest.load(directory: dir)
        for s in m.shards { evict(dir + "/" + s.file) }
    }

    /// Reads files start to end in 4 MiB blocks; returns (bytes, seconds).
    public static func sequentialRead(_ paths: [String]) -> (bytes: Int, seconds: Double) {
        let block = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)
        defer { buf.deallocate() }
        let t0 = Date()
        var total = 0
        for p in paths {
            let fd = open(p, O_RDONLY)
            guard fd >= 0 else { continue }
            while true { let r = read(fd, buf, block); if r <= 0 { break }; total += r }
            close(fd)
        }
        return (total, Date().timeIntervalSince(t0))
    }

    /// Peak resident set (VmHWM) of this process, in bytes.
    public static func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    public struct LoadResult: Codable, Sendable {
        public var samples: Int
        public var batches: Int
        public var seconds: Double
        public var featureBytes: Int
        public var peakRSS: Int
        public var poolBytes: Int
        public var samplesPerSecond: Double { Double(samples) / seconds }
        public var megabytesPerSecond: Double { Double(featureBytes) / seconds / 1e6 }
        public var millisecondsPerBatch: Double { 1000 * seconds / Double(max(batches, 1)) }
    }

    /// Pulls `batches` micro-batches of rank `rank` through the prefetching iterator as
    /// fast as the consumer can take them (the consumer does no work), so the figure is
    /// the loader's own throughput.
    public static func load(directory: String, config: LoaderConfig, batches: Int, rank: Int = 0, worldSize: Int = 1) throws -> LoadResult {
        let store = try FeatureStore(directory: directory)
        let loader = try StoreLoader(store: store, config: config)
        let it = try loader.batches(rank: rank, worldSize: worldSize)
        let t0 = Date()
        var n = 0, got = 0, checksum: Float = 0
        while got < batches, let b = try it.next() {
            n += b.count; got += 1
            if b.count > 0 { checksum += b.audio[0] + b.video[b.count * store.spec.videoRow - 1] }   // touch the data
        }
        let secs = Date().timeIntervalSince(t0)
        let pool = it.poolBytes
        it.close()
        if checksum.isNaN { print("") }
        return LoadResult(samples: n, batches: got, seconds: secs, featureBytes: n * store.spec.featureBytes,
                          peakRSS: peakRSS(), poolBytes: pool)
    }
}

/// Resident memory of a process from /proc (Linux): anonymous and file-backed pages, and
/// the file-backed pages of a store's row table and shard files (from smaps).
public struct ProcessMemory: Codable, Sendable {
    public var rssAnon = 0, rssFile = 0, peak = 0
    public var tableRss = 0, shardRss = 0
    public init() {}

    /// The whole of a /proc file (they report size 0, so read until the end).
    static func procFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8](), buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RssAnon, RssFile and VmHWM of `pid`, in bytes (nil once it has exited).
    public static func status(_ pid: Int32) -> ProcessMemory? {
        guard let s = procFile("/proc/\(pid)/status"), !s.isEmpty else { return nil }
        var m = ProcessMemory()
        for line in s.split(separator: "\n") {
            let kb = (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
            if line.hasPrefix("RssAnon:") { m.rssAnon = kb } else if line.hasPrefix("RssFile:") { m.rssFile = kb } else if line.hasPrefix("VmHWM:") { m.peak = kb }
        }
        return m
    }

    /// Resident bytes of `pid`'s mappings of the row table and of shard files.
    public static func storeMappings(_ pid: Int32) -> (table: Int, shards: Int)? {
        guard let s = procFile("/proc/\(pid)/smaps"), !s.isEmpty else { return nil }
        var table = 0, shards = 0
        var current = 0   // 1: table, 2: shard, 0: other
        for line in s.split(separator: "\n") {
            let head = line.prefix(while: { $0 != " " })
            if head.contains("-") && head.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                current = line.hasSuffix("/" + RowTableFormat.fileName) ? 1 : (line.hasSuffix(".h5") ? 2 : 0)
            } else if line.hasPrefix("Rss:") && current != 0 {
                let kb = (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
                if current == 1 { table += kb } else { shards += kb }
            }
        }
        return (table, shards)
    }
}
