// The store's row table (row-table.bin): what the loader needs of every sample, in one
// memory-mapped file, so that a read costs the same whatever the number of shards or
// samples: no HDF5 call, no shard to open, no per-shard arrays in memory.
//
// Layout (little-endian; docs/feature-store.md, "Row table", is the specification):
//   header      64 bytes: magic, version, row bytes, rows, shards, tokens per row, a
//               fingerprint of the manifest's shard list, the CRC-32 of the shard section,
//               where the text entries and the block CRCs start, the header's own CRC-32
//   shards      32 bytes each: first global row, base of its text entries, rows per
//               feature chunk (audio, video), which feature datasets carry Fletcher32
//   rows        32 bytes each: audio and video chunk addresses in the shard file, the text
//               entry's offset, label, audio/video/token lengths, split code
//   texts       per row: CRC-32, id and transcript byte counts, token ids, id, transcript
//   block CRCs  CRC-32 of each block of 1,024 rows, checked on the block's first read
// The header, fingerprint and shard section are checked at open (a table of another
// version of the store is refused), a block of rows on its first read in a run, a text
// entry on every read (a few hundred bytes). Feature chunks keep their own Fletcher32.
import Foundation
import SKESLHDF5

public enum RowTableFormat {
    public static let fileName = "row-table.bin"
    static let magic: [UInt8] = Array("SKESLRT1".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 64
    static let shardBytes = 32
    static let rowBytes = 32
    static let blockRows = 1024
    static let textHeaderBytes = 12

    /// CRC-32 of what the table depends on in the manifest: features and each shard's
    /// file, samples, bytes and CRC-32. A table built for other shard files is refused.
    static func fingerprint(_ m: Manifest) -> UInt32 {
        var s = "\(m.features.audioFrames),\(m.features.audioDim),\(m.features.videoFrames),\(m.features.videoDim),\(m.features.tokens ?? 0),\(m.features.labeled)\n"
        for e in m.shards { s += "\(e.file)\t\(e.samples)\t\(e.bytes)\t\(e.crc32.lowercased())\n" }
        return CRC32.of(Array(s.utf8))
    }

    static func blocks(_ rows: Int) -> Int { (rows + blockRows - 1) / blockRows }

    /// The command that (re)writes a store's table.
    static func rebuildHint(_ dir: String) -> String { "skesl store verify --rebuild-row-table \(dir)" }
}

/// A sound table that describes other shard files than the manifest's (the store was
/// changed after the table was written): the loader reads through HDF5 and says so.
struct RowTableStale: Error, CustomStringConvertible {
    let description: String
}

/// One shard's entry in the table.
struct RowTableShard {
    var firstRow: Int
    var textBase: Int
    var audioRowsPerChunk: Int
    var videoRowsPerChunk: Int
    var audioChecksum: Bool
    var videoChecksum: Bool
}

/// A store's row table, mapped read-only. Not thread-safe (block checks update state):
/// the loader serialises its reads.
public final class RowTable {
    public let path: String
    let mapping: FileMapping
    public let rows: Int
    let tokens: Int
    let shards: [RowTableShard]
    private let rowsStart: Int, textStart: Int, crcStart: Int
    private var blockChecked: [UInt64]
    /// Text entries are read with pread, not through the mapping: they are read once per
    /// sample and epoch, and mapped pages would stay resident (RssFile) for the whole run.
    private let fd: Int32
    private var textBuffer = [UInt8](repeating: 0, count: 4096)

    /// Opens `directory`'s table, or returns nil when the store has none. Throws, naming
    /// the file and the command that rebuilds it, when the table is damaged or belongs to
    /// other shard files.
    public static func open(directory: String, manifest: Manifest) throws -> RowTable? {
        let path = directory + "/" + RowTableFormat.fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try RowTable(path: path, directory: directory, manifest: manifest)
    }

    init(path: String, directory: String, manifest m: Manifest) throws {
        self.path = path
        func bad(_ why: String) -> StoreError {
            StoreError("\(path): \(why). The row table is damaged or out of date: rebuild it with `\(RowTableFormat.rebuildHint(directory))` (or delete it to read through HDF5)")
        }
        do { mapping = try FileMapping(path: path) } catch { throw bad("cannot be mapped (\(error))") }
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw bad("cannot be opened (\(String(cString: strerror(errno))))") }
        let b = mapping.base
        guard mapping.size >= RowTableFormat.headerBytes else { throw bad("\(mapping.size) bytes, shorter than its header") }
        guard (0..<8).allSatisfy({ b.load(fromByteOffset: $0, as: UInt8.self) == RowTableFormat.magic[$0] }) else { throw bad("not a skesl row table (wrong magic)") }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        var hc = CRC32(); hc.update(UnsafeRawBufferPointer(start: b, count: 56))
        guard hc.value == u32(56) else { throw bad("its header fails its CRC-32") }
        guard u32(8) == RowTableFormat.version, u32(12) == UInt32(RowTableFormat.rowBytes) else { throw bad("version \(u32(8)), this skesl reads version \(RowTableFormat.version)") }
        rows = Int(u64(16)); let nShards = Int(u32(24)); tokens = Int(u32(28))
        guard u32(32) == RowTableFormat.fingerprint(m) else {
            throw RowTableStale(description: "\(path): was written for other shard files than the manifest lists (the store changed since). Rebuild it with `\(RowTableFormat.rebuildHint(directory))`")
        }
        guard rows == m.totalSamples, nShards == m.shards.count else {
            throw bad("holds \(rows) rows of \(nShards) shards, the manifest \(m.totalSamples) samples in \(m.shards.count) shards")
        }
        guard tokens == (m.features.tokens ?? 0) else { throw bad("holds \(tokens) token ids per row, the manifest \(m.features.tokens ?? 0)") }
        rowsStart = RowTableFormat.headerBytes + RowTableFormat.shardBytes * nShards
        textStart = Int(u64(48)); crcStart = Int(u64(40))
        guard textStart == rowsStart + RowTableFormat.rowBytes * rows, crcStart >= textStart,
              crcStart + 4 * RowTableFormat.blocks(rows) == mapping.size else {
            throw bad("\(mapping.size) bytes, its header describes another size (truncated?)")
        }
        var sc = CRC32(); sc.update(UnsafeRawBufferPointer(start: b + RowTableFormat.headerBytes, count: RowTableFormat.shardBytes * nShards))
        guard sc.value == u32(36) else { throw bad("its shard section fails its CRC-32") }
        var list: [RowTableShard] = []
        var first = 0
        for i in 0..<nShards {
            let o = RowTableFormat.headerBytes + RowTableFormat.shardBytes * i
            let s = RowTableShard(firstRow: Int(u64(o)), textBase: Int(u64(o + 8)), audioRowsPerChunk: Int(u32(o + 16)),
                                  videoRowsPerChunk: Int(u32(o + 20)), audioChecksum: u32(o + 24) & 1 != 0, videoChecksum: u32(o + 24) & 2 != 0)
            guard s.firstRow == first, s.audioRowsPerChunk >= 1, s.videoRowsPerChunk >= 1,
                  s.textBase >= textStart, s.textBase <= crcStart else { throw bad("shard \(i)'s entry is inconsistent") }
            first += m.shards[i].samples
            list.append(s)
        }
        shards = list
        blockChecked = [UInt64](repeating: 0, count: (RowTableFormat.blocks(rows) + 63) / 64)
    }

    deinit { close(fd) }

    /// Row `g` (a global sample id), its block's CRC-32 checked on first use.
    @inline(__always)
    func row(_ g: Int) throws -> UnsafeRawPointer {
        let blk = g / RowTableFormat.blockRows
        if blockChecked[blk >> 6] & (1 << UInt64(blk & 63)) == 0 { try checkBlock(blk) }
        return mapping.base + rowsStart + RowTableFormat.rowBytes * g
    }

    private func checkBlock(_ blk: Int) throws {
        let lo = blk * RowTableFormat.blockRows, hi = min(rows, lo + RowTableFormat.blockRows)
        var c = CRC32()
        c.update(UnsafeRawBufferPointer(start: mapping.base + rowsStart + RowTableFormat.rowBytes * lo, count: RowTableFormat.rowBytes * (hi - lo)))
        let stored = UInt32(littleEndian: mapping.base.loadUnaligned(fromByteOffset: crcStart + 4 * blk, as: UInt32.self))
        guard c.value == stored else {
            throw StoreError("\(path): rows \(lo)..<\(hi) (global sample ids) fail their CRC-32: the row table is damaged. Rebuild it with `\(RowTableFormat.rebuildHint((path as NSString).deletingLastPathComponent))`")
        }
        blockChecked[blk >> 6] |= 1 << UInt64(blk & 63)
    }

    /// Checks every block (verify).
    func checkAllBlocks() throws { for b in 0..<RowTableFormat.blocks(rows) { try checkBlock(b) } }

    /// The text entry of row `g`: id, transcript and token ids (int32, `tokens` of them,
    /// valid until the next call), its CRC-32 checked.
    func text(_ g: Int, row r: UnsafeRawPointer, shard: Int) throws -> (id: String, transcript: String, tokens: UnsafeRawPointer) {
        let off = shards[shard].textBase + Int(UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        func damaged() -> StoreError {
            StoreError("\(path): the text entry of global sample id \(g) is damaged (CRC-32 or bounds). Rebuild the table with `\(RowTableFormat.rebuildHint((path as NSString).deletingLastPathComponent))`")
        }
        func read(_ n: Int, at o: Int) throws {
            if textBuffer.count < n { textBuffer = [UInt8](repeating: 0, count: n) }
            let got = textBuffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(o)) }
            guard got == n else { throw StoreError("\(path): reading the text entry of global sample id \(g) failed (\(got < 0 ? String(cString: strerror(errno)) : "short read"): truncated?)") }
        }
        guard off + RowTableFormat.textHeaderBytes <= crcStart else { throw damaged() }
        try read(RowTableFormat.textHeaderBytes, at: off)
        let (stored, idLen, textLen) = textBuffer.withUnsafeBytes { p in
            (UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)), Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))),
             Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))))
        }
        let body = 8 + 4 * tokens + idLen + textLen
        guard idLen <= crcStart, textLen <= crcStart, off + 4 + body <= crcStart else { throw damaged() }
        try read(4 + body, at: off)
        return try textBuffer.withUnsafeBytes { p in
            var c = CRC32(); c.update(UnsafeRawBufferPointer(rebasing: p[4..<(4 + body)]))
            guard c.value == stored else { throw damaged() }
            let s = RowTableFormat.textHeaderBytes + 4 * tokens
            let id = String(decoding: UnsafeRawBufferPointer(rebasing: p[s..<(s + idLen)]), as: UTF8.self)
            let tr = String(decoding: UnsafeRawBufferPointer(rebasing: p[(s + idLen)..<(s + idLen + textLen)]), as: UTF8.self)
            return (id, tr, p.baseAddress! + RowTableFormat.textHeaderBytes)
        }
    }
}

/// Field access of a 32-byte row.
extension UnsafeRawPointer {
    @inline(__always) var rowAudioChunk: Int { Int(UInt64(littleEndian: loadUnaligned(fromByteOffset: 0, as: UInt64.self))) }
    @inline(__always) var rowVideoChunk: Int { Int(UInt64(littleEndian: loadUnaligned(fromByteOffset: 8, as: UInt64.self))) }
    @inline(__always) var rowLabel: Float { Float(bitPattern: UInt32(littleEndian: loadUnaligned(fromByteOffset: 20, as: UInt32.self))) }
    @inline(__always) var rowAudioLength: Int32 { Int32(UInt16(littleEndian: loadUnaligned(fromByteOffset: 24, as: UInt16.self))) }
    @inline(__always) var rowVideoLength: Int32 { Int32(UInt16(littleEndian: loadUnaligned(fromByteOffset: 26, as: UInt16.self))) }
    @inline(__always) var rowTokenLength: Int32 { Int32(UInt16(littleEndian: loadUnaligned(fromByteOffset: 28, as: UInt16.self))) }
    @inline(__always) var rowSplit: UInt8 { load(fromByteOffset: 30, as: UInt8.self) }
}
