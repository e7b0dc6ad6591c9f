// An opened store: its manifest, where each global sample id lives (shard base offset
// + row), and shard readers that check a shard's structure against the manifest.
import Foundation
import SKESLHDF5
import SKESLKernels

public final class FeatureStore {
    public let directory: String
    public let manifest: Manifest
    /// offsets[i] = global id of row 0 of shard i; offsets.last = total samples.
    public let offsets: [Int64]

    public init(directory: String) throws {
        self.directory = directory
        manifest = try Manifest.load(directory: directory)
        var o: [Int64] = [0]
        for s in manifest.shards { o.append(o.last! + Int64(s.samples)) }
        offsets = o
    }

    public var spec: FeatureSpec { manifest.features }
    public var count: Int { manifest.totalSamples }
    public var shardCount: Int { manifest.shards.count }

    public func shardPath(_ i: Int) -> String { directory + "/" + manifest.shards[i].file }

    /// The store's identity for checkpoints and caches: its name and every shard's file,
    /// sample count and CRC-32, folded with FNV-1a (64-bit hex). A checkpoint's data
    /// cursor and a BERT cache are valid only for the store with the same fingerprint.
    public var fingerprint: String {
        var h = fnv1a64(manifest.name)
        for sh in manifest.shards { h = FNV1a64.fold(h, fnv1a64("\(sh.file):\(sh.samples):\(sh.crc32)")) }
        return String(format: "%016llx", h)
    }

    /// (shard, row) of a global sample id, by binary search over the shard offsets.
    public func locate(_ globalId: Int64) -> (shard: Int, row: Int) {
        var lo = 0, hi = offsets.count - 2
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= globalId { lo = mid } else { hi = mid - 1 }
        }
        // Skip empty shards that share the offset.
        while lo + 1 < offsets.count - 1 && offsets[lo + 1] <= globalId { lo += 1 }
        return (lo, Int(globalId - offsets[lo]))
    }

    /// Opens shard `i`. `sequential` readers keep HDF5's chunk caches (verify, reshard);
    /// shuffled readers bypass them so that memory does not grow with the shard count.
    /// `verifyEveryRead`: see LoaderConfig.verifyEveryRead (mapped feature rows).
    public func openShard(_ i: Int, sequential: Bool = false, verifyEveryRead: Bool = true) throws -> ShardReader {
        let r = try ShardReader(path: shardPath(i), index: i, entry: manifest.shards[i], spec: spec,
                                labelRange: manifest.labelRange, globalOffset: offsets[i], sequential: sequential)
        r.audio.verifyEveryRead = verifyEveryRead; r.video.verifyEveryRead = verifyEveryRead
        return r
    }
}

/// Reads and checks rows of one shard file.
public final class ShardReader {
    public let path: String
    public let index: Int
    public let samples: Int
    public let spec: FeatureSpec
    public let labelRange: [Float]?
    public let globalOffset: Int64
    let file: H5File
    let ids: H5RowReader, texts: H5RowReader
    let audio: H5RowReader, audioLength: H5RowReader
    let video: H5RowReader, videoLength: H5RowReader
    let tokens: H5RowReader?, tokenLength: H5RowReader?
    let label: H5RowReader?, split: H5RowReader?

    /// The manifest's byte count, and a descriptor to compare the file against it on reads
    /// that go through HDF5: its sec2 driver reads zeros past the end of a file truncated
    /// under a running job, and all-zero chunks pass Fletcher32. (Mapped reads get SIGBUS.)
    private let bytes: Int
    private let sizeFD: Int32

    deinit { if sizeFD >= 0 { close(sizeFD) } }

    init(path: String, index: Int, entry: ShardEntry, spec: FeatureSpec, labelRange: [Float]?,
         globalOffset: Int64, sequential: Bool) throws {
        self.path = path; self.index = index; self.samples = entry.samples; self.spec = spec
        self.labelRange = labelRange; self.globalOffset = globalOffset
        bytes = entry.bytes
        sizeFD = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        _ = try ShardReader.checkFile(path: path, index: index, entry: entry)
        let f: H5File
        do { f = try H5File.open(path) } catch {
            throw StoreError("\(path): cannot be opened as HDF5 (truncated or corrupt: \(error)). Restore it or rebuild the store")
        }
        file = f
        if !sequential { try f.limitMetadataCache(bytes: 64 << 10) }
        let metaCache = sequential ? 1 << 20 : 32 << 10
        let featCache = sequential ? 4 << 20 : 0
        func open(_ name: String, cache: Int, dims: [Int], kind: String) throws -> H5RowReader {
            let ds: H5Dataset
            do { ds = try f.dataset(name, cacheBytes: cache) } catch {
                throw StoreError("\(path): missing dataset /\(name); the shard is incomplete or not a skesl store shard. Re-import it")
            }
            let r = try H5RowReader(ds)
            let want = [entry.samples] + dims
            if r.shape != want {
                throw StoreError("\(path): dataset /\(name) has shape \(r.shape), the manifest says \(want) (shards of different dimensions, or a manifest from another store)")
            }
            let ok: Bool
            switch kind {
            case "float": ok = ds.isFloat
            case "int": ok = ds.isInteger
            default: ok = ds.isString
            }
            if !ok { throw StoreError("\(path): dataset /\(name) is \(ds.storage.typeDescription), expected \(kind)") }
            return r
        }
        ids = try open(ShardSchema.utteranceId, cache: metaCache, dims: [], kind: "string")
        texts = try open(ShardSchema.transcript, cache: metaCache, dims: [], kind: "string")
        audio = try open(ShardSchema.audio, cache: featCache, dims: [spec.audioFrames, spec.audioDim], kind: "float")
        audioLength = try open(ShardSchema.audioLength, cache: metaCache, dims: [], kind: "int")
        video = try open(ShardSchema.video, cache: featCache, dims: [spec.videoFrames, spec.videoDim], kind: "float")
        videoLength = try open(ShardSchema.videoLength, cache: metaCache, dims: [], kind: "int")
        if let L = spec.tokens {
            tokens = try open(ShardSchema.tokens, cache: metaCache, dims: [L], kind: "int")
            tokenLength = try open(ShardSchema.tokenLength, cache: metaCache, dims: [], kind: "int")
        } else { tokens = nil; tokenLength = nil }
        if spec.labeled {
            label = try open(ShardSchema.label, cache: metaCache, dims: [], kind: "float")
            split = try open(ShardSchema.split, cache: metaCache, dims: [], kind: "int")
        } else { label = nil; split = nil }
        // Feature rows with a recorded chunk index are copied out of a mapping of the file
        // (H5RowReader.useChunkAddresses); without one they are read chunk by chunk.
        if !sequential {
            let indexed = [(audio, ShardSchema.audio), (video, ShardSchema.video)].compactMap { r, name -> (H5RowReader, [UInt64])? in
                guard f.exists(ShardSchema.chunkIndex(name)), let a = try? f.read(ShardSchema.chunkIndex(name), as: UInt64.self).values else { return nil }
                return (r, a)
            }
            if !indexed.isEmpty, let m = try? FileMapping(path: path) {
                for (r, a) in indexed { r.useChunkAddresses(a, mapping: m) }
            }
        }
        // Per-sample scalars are a few bytes a row: held in memory, a sample's read makes
        // no HDF5 call for them.
        audioLength.preload(as: Int32.self); videoLength.preload(as: Int32.self)
        tokenLength?.preload(as: Int32.self)
        label?.preload(as: Float.self); split?.preload(as: UInt8.self)
    }

    /// Checks that a shard file exists and has the manifest's size; returns its status
    /// (the loader compares its modification time with the row table's).
    static func checkFile(path: String, index: Int, entry: ShardEntry) throws -> stat {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw StoreError("\(path): missing; the manifest names it as shard \(index) with \(entry.samples) samples. Restore the file or rebuild the store")
        }
        if Int(st.st_size) != entry.bytes {
            throw StoreError("\(path): \(st.st_size) bytes, the manifest says \(entry.bytes): the shard is truncated or was replaced. Restore it or rebuild the store")
        }
        return st
    }

    /// Split codes of all rows (labeled shards): small, read whole to select a split.
    public func splitCodes() throws -> [UInt8] {
        guard let s = split else { return [] }
        var out = [UInt8](repeating: 0, count: samples)
        try out.withUnsafeMutableBufferPointer { try s.read(0, samples, into: $0.baseAddress!) }
        return out
    }

    /// Reads rows [row, row+n) into slot `slot` onwards of `batch` and checks each.
    /// A failed read or a failed check is a SampleProblem naming the file and the row.
    /// `text: false` skips utterance ids and transcripts (variable-length strings, the
    /// costliest part of a read) when the consumer does not need them.
    func read(row: Int, count n: Int, into b: StoreBatch, slot: Int, text: Bool = true) throws {
        let s = spec
        let gid = globalOffset + Int64(row)
        func problem(_ r: Int, _ reason: String, _ uid: String? = nil) -> SampleProblem {
            SampleProblem(file: path, row: r, globalId: globalOffset + Int64(r), utteranceId: uid, reason: reason)
        }
        if text || !audio.readsFromMapping || !video.readsFromMapping {
            var st = stat()
            if sizeFD >= 0 && fstat(sizeFD, &st) == 0 && Int(st.st_size) != bytes {
                throw StoreError("\(path): the file is now \(st.st_size) bytes, the manifest says \(bytes): it was truncated or replaced while this run was reading it. Restore it (check with `skesl store verify`), then rerun the same command to resume from the newest checkpoint")
            }
        }
        var uids: [String]? = nil, txts: [String]? = nil
        var featuresFinite = false   // true: every audio and video value was seen finite while read
        do {
            if text { uids = try ids.readStrings(row, n); txts = try texts.readStrings(row, n) }
            // Addressable bytes after the rows: later slots and the buffers' padding.
            let spare = 4 * StoreBatch.featurePadding
            let audioFinite = try audio.readFloatRows(row, n, into: b.audio.baseAddress! + slot * s.audioRow,
                                                      spareBytesAfter: 4 * (b.capacity - slot - n) * s.audioRow + spare)
            let videoFinite = try video.readFloatRows(row, n, into: b.video.baseAddress! + slot * s.videoRow,
                                                      spareBytesAfter: 4 * (b.capacity - slot - n) * s.videoRow + spare)
            featuresFinite = audioFinite == true && videoFinite == true
            try audioLength.read(row, n, into: b.audioLengths.baseAddress! + slot)
            try videoLength.read(row, n, into: b.videoLengths.baseAddress! + slot)
            if let t = tokens, let tl = tokenLength, let L = s.tokens {
                try t.read(row, n, into: b.tokens!.baseAddress! + slot * L)
                try tl.read(row, n, into: b.tokenLengths!.baseAddress! + slot)
            }
            if let l = label, let sp = split {
                try l.read(row, n, into: b.labels!.baseAddress! + slot)
                try sp.read(row, n, into: b.splits!.baseAddress! + slot)
            }
        } catch let e as HDF5Error {
            throw problem(row, "unreadable (\(e.message.replacingOccurrences(of: path + ": ", with: "")))")
        }
        for k in 0..<n {
            let j = slot + k
            b.globalIds[j] = gid + Int64(k)
            if let u = uids, let t = txts { b.utteranceIds[j] = u[k]; b.transcripts[j] = t[k] }
            if let reason = b.check(slot: j, labelRange: labelRange, text: text, featuresFinite: featuresFinite) { throw problem(row + k, reason, uids?[k]) }
        }
    }
}
