// Writes a store's row table (RowTable.swift) from its shard files: the store writer
// calls it before the manifest, `skesl store verify --rebuild-row-table` for stores
// written without one (older skesl, other tools). It reads each shard's small datasets
// whole (lengths, labels, splits, token ids, ids and transcripts) and its feature chunk
// addresses, never the features; memory is one shard's small datasets.
import Foundation
import SKESLHDF5

public enum RowTableBuilder {
    /// Writes the table of the store in `directory` described by `manifest` to `output`
    /// (default: the store's row-table.bin), through a temporary file renamed into place.
    /// Returns false, writing nothing, when a shard's features cannot be read from a
    /// mapping (compressed or otherwise filtered chunks, another element type): such
    /// stores are read through HDF5.
    @discardableResult
    public static func write(directory: String, manifest m: Manifest, to output: String? = nil) throws -> Bool {
        let spec = m.features
        guard max(spec.audioFrames, spec.videoFrames, spec.tokens ?? 0) <= Int(UInt16.max) else { return false }
        let out = output ?? directory + "/" + RowTableFormat.fileName
        let tmp = out + ".tmp"
        let fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError("\(tmp): cannot write the row table (\(String(cString: strerror(errno))))") }
        var keep = false
        defer { close(fd); if !keep { unlink(tmp) } }
        func put(_ bytes: [UInt8], at offset: Int) throws {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
            guard n == bytes.count else { throw StoreError("\(tmp): writing the row table failed (disk full?)") }
        }
        let nShards = m.shards.count, rows = m.totalSamples, L = spec.tokens ?? 0
        let rowsStart = RowTableFormat.headerBytes + RowTableFormat.shardBytes * nShards
        let textStart = rowsStart + RowTableFormat.rowBytes * rows
        var textCursor = textStart
        var shardSection = [UInt8](repeating: 0, count: RowTableFormat.shardBytes * nShards)
        var firstRow = 0
        for (i, entry) in m.shards.enumerated() {
            let path = directory + "/" + entry.file
            guard let sh = try shardRows(path: path, entry: entry, spec: spec) else { return false }
            guard sh.text.count <= Int(UInt32.max) else { throw StoreError("\(path): more than 4 GB of transcripts in one shard; reshard the store into more shards") }
            try put(sh.rows, at: rowsStart + RowTableFormat.rowBytes * firstRow)
            try put(sh.text, at: textCursor)
            shardSection.withUnsafeMutableBytes { p in
                let o = RowTableFormat.shardBytes * i
                p.storeBytes(of: UInt64(firstRow).littleEndian, toByteOffset: o, as: UInt64.self)
                p.storeBytes(of: UInt64(textCursor).littleEndian, toByteOffset: o + 8, as: UInt64.self)
                p.storeBytes(of: UInt32(sh.audioRowsPerChunk).littleEndian, toByteOffset: o + 16, as: UInt32.self)
                p.storeBytes(of: UInt32(sh.videoRowsPerChunk).littleEndian, toByteOffset: o + 20, as: UInt32.self)
                p.storeBytes(of: UInt32((sh.audioChecksum ? 1 : 0) | (sh.videoChecksum ? 2 : 0)).littleEndian, toByteOffset: o + 24, as: UInt32.self)
            }
            firstRow += entry.samples
            textCursor += sh.text.count
        }
        let crcStart = textCursor
        try put(shardSection, at: RowTableFormat.headerBytes)
        // Block CRCs over the rows as written (read back in blocks).
        var crcs = [UInt8](); crcs.reserveCapacity(4 * RowTableFormat.blocks(rows))
        var buf = [UInt8](repeating: 0, count: RowTableFormat.rowBytes * RowTableFormat.blockRows)
        for blk in 0..<RowTableFormat.blocks(rows) {
            let lo = blk * RowTableFormat.blockRows, n = min(rows - lo, RowTableFormat.blockRows) * RowTableFormat.rowBytes
            let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(rowsStart + RowTableFormat.rowBytes * lo)) }
            guard got == n else { throw StoreError("\(tmp): reading back the row table failed") }
            var c = CRC32(); buf.withUnsafeBytes { c.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            withUnsafeBytes(of: c.value.littleEndian) { crcs.append(contentsOf: $0) }
        }
        try put(crcs, at: crcStart)
        var header = [UInt8](repeating: 0, count: RowTableFormat.headerBytes)
        var sc = CRC32(); shardSection.withUnsafeBytes { sc.update($0) }
        header.withUnsafeMutableBytes { p in
            RowTableFormat.magic.withUnsafeBytes { p.copyMemory(from: $0) }
            p.storeBytes(of: RowTableFormat.version.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(RowTableFormat.rowBytes).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: UInt64(rows).littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: UInt32(nShards).littleEndian, toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: UInt32(L).littleEndian, toByteOffset: 28, as: UInt32.self)
            p.storeBytes(of: RowTableFormat.fingerprint(m).littleEndian, toByteOffset: 32, as: UInt32.self)
            p.storeBytes(of: sc.value.littleEndian, toByteOffset: 36, as: UInt32.self)
            p.storeBytes(of: UInt64(crcStart).littleEndian, toByteOffset: 40, as: UInt64.self)
            p.storeBytes(of: UInt64(textStart).littleEndian, toByteOffset: 48, as: UInt64.self)
            var hc = CRC32(); hc.update(UnsafeRawBufferPointer(rebasing: p[0..<56]))
            p.storeBytes(of: hc.value.littleEndian, toByteOffset: 56, as: UInt32.self)
        }
        try put(header, at: 0)
        guard fsync(fd) == 0 else { throw StoreError("\(tmp): cannot sync the row table to disk") }
        guard rename(tmp, out) == 0 else { throw StoreError("\(out): cannot move the row table into place (\(String(cString: strerror(errno))))") }
        keep = true
        return true
    }

    struct ShardRows {
        var rows: [UInt8]
        var text: [UInt8]
        var audioRowsPerChunk: Int, videoRowsPerChunk: Int
        var audioChecksum: Bool, videoChecksum: Bool
    }

    /// One shard's rows and text entries, or nil when its features cannot be mapped.
    /// Text offsets are relative to the shard's first entry (its text base in the table).
    static func shardRows(path: String, entry: ShardEntry, spec: FeatureSpec) throws -> ShardRows? {
        let f: H5File
        do { f = try H5File.open(path) } catch {
            throw StoreError("\(path): cannot be opened as HDF5 to build the row table (\(error)). Restore it, check the store with `skesl store verify`")
        }
        let n = entry.samples
        func layout(_ name: String) throws -> (rowsPerChunk: Int, checksum: Bool, addresses: [UInt64])? {
            let ds = try f.dataset(name)
            guard let lay = try ds.rowChunkLayout() else { return nil }
            var a = [UInt64](repeating: 0, count: n)
            let shape = try ds.shape()
            guard shape.first == n else { throw StoreError("\(path): dataset /\(name) has \(shape.first ?? 0) rows, the manifest says \(n)") }
            let zeros = [Int](repeating: 0, count: shape.count - 1)
            // Written by skesl: the recorded per-row addresses, spot-checked against
            // HDF5's index like the reader does; otherwise one lookup per chunk.
            if lay.rowsPerChunk == 1, n > 0, f.exists(ShardSchema.chunkIndex(name)),
               let idx = try? f.read(ShardSchema.chunkIndex(name), as: UInt64.self).values, idx.count == n,
               try Set([0, n / 2, n - 1]).allSatisfy({ UInt64(try ds.chunkLocation([$0] + zeros).address) == idx[$0] }) {
                a = idx
            } else {
                var r = 0
                while r < n {
                    let addr = UInt64(try ds.chunkLocation([r] + zeros).address)
                    for k in r..<min(n, r + lay.rowsPerChunk) { a[k] = addr }
                    r += lay.rowsPerChunk
                }
            }
            return (lay.rowsPerChunk, lay.checksum, a)
        }
        guard let audio = try layout(ShardSchema.audio), let video = try layout(ShardSchema.video) else { return nil }
        func ints(_ name: String) throws -> [Int32] { n == 0 ? [] : try f.read(name, as: Int32.self).values }
        let al = try ints(ShardSchema.audioLength), vl = try ints(ShardSchema.videoLength)
        let tl = spec.tokens != nil ? try ints(ShardSchema.tokenLength) : []
        let tokens = spec.tokens != nil ? try ints(ShardSchema.tokens) : []
        let labels: [Float] = spec.labeled && n > 0 ? try f.read(ShardSchema.label, as: Float.self).values : []
        let splits: [UInt8] = spec.labeled && n > 0 ? try f.read(ShardSchema.split, as: UInt8.self).values : []
        let ids = n == 0 ? [] : try f.readStrings(ShardSchema.utteranceId)
        let texts = n == 0 ? [] : try f.readStrings(ShardSchema.transcript)
        let L = spec.tokens ?? 0
        guard al.count == n, vl.count == n, ids.count == n, texts.count == n, tokens.count == (L > 0 ? n * L : 0),
              tl.count == (L > 0 ? n : 0), labels.count == (spec.labeled ? n : 0), splits.count == labels.count else {
            throw StoreError("\(path): its datasets do not all hold \(n) rows (the manifest's count); check it with `skesl store verify`")
        }
        // Lengths are stored as 16 bits: a value outside 0...65535 (a damaged sample) is
        // kept out of range so that the loader still reports the sample.
        func u16(_ v: Int32) -> UInt16 { v < 0 || v > Int32(UInt16.max) ? UInt16.max : UInt16(v) }
        var rows = [UInt8](repeating: 0, count: RowTableFormat.rowBytes * n)
        var text = [UInt8]()
        for r in 0..<n {
            let off = text.count
            let id = Array(ids[r].utf8), tr = Array(texts[r].utf8)
            var e = [UInt8](repeating: 0, count: RowTableFormat.textHeaderBytes + 4 * L)
            e.withUnsafeMutableBytes { p in
                p.storeBytes(of: UInt32(id.count).littleEndian, toByteOffset: 4, as: UInt32.self)
                p.storeBytes(of: UInt32(tr.count).littleEndian, toByteOffset: 8, as: UInt32.self)
                for k in 0..<L { p.storeBytes(of: UInt32(bitPattern: tokens[r * L + k]).littleEndian, toByteOffset: 12 + 4 * k, as: UInt32.self) }
            }
            e += id; e += tr
            var c = CRC32(); e.withUnsafeBytes { c.update(UnsafeRawBufferPointer(rebasing: $0[4...])) }
            e.withUnsafeMutableBytes { $0.storeBytes(of: c.value.littleEndian, as: UInt32.self) }
            text += e
            rows.withUnsafeMutableBytes { p in
                let o = RowTableFormat.rowBytes * r
                p.storeBytes(of: audio.addresses[r].littleEndian, toByteOffset: o, as: UInt64.self)
                p.storeBytes(of: video.addresses[r].littleEndian, toByteOffset: o + 8, as: UInt64.self)
                p.storeBytes(of: UInt32(off).littleEndian, toByteOffset: o + 16, as: UInt32.self)
                p.storeBytes(of: (spec.labeled ? labels[r] : 0).bitPattern.littleEndian, toByteOffset: o + 20, as: UInt32.self)
                p.storeBytes(of: u16(al[r]).littleEndian, toByteOffset: o + 24, as: UInt16.self)
                p.storeBytes(of: u16(vl[r]).littleEndian, toByteOffset: o + 26, as: UInt16.self)
                p.storeBytes(of: (L > 0 ? u16(tl[r]) : 0).littleEndian, toByteOffset: o + 28, as: UInt16.self)
                p.storeBytes(of: spec.labeled ? splits[r] : 0, toByteOffset: o + 30, as: UInt8.self)
            }
        }
        return ShardRows(rows: rows, text: text, audioRowsPerChunk: audio.rowsPerChunk, videoRowsPerChunk: video.rowsPerChunk,
                         audioChecksum: audio.checksum, videoChecksum: video.checksum)
    }
}
