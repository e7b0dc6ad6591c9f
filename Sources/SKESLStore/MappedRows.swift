// The loader's reads through the row table: a sample is its 32-byte table row, its
// feature rows copied out of a mapping of its shard file (mapped once per run, on the
// shard's first read), and, when asked for, its text entry (one pread). No HDF5 call, no
// system call for the features after a shard's first read (but one madvise per touched
// shard when the mapped pages are released, see `account`), nothing in memory per shard
// beyond the mapping; so the cost of a read does not depend on the number of shards or
// of samples.
//
// Verification is today's: a sample's audio and video chunks pass Fletcher32 and a
// NaN/Inf test on the sample's first read in the run (a bit per sample remembers it), or
// on every read with verifyEveryRead; the shard file's size is checked against the
// manifest when it is mapped; a truncation later is a SIGBUS with a message (main.swift).
// A chunk whose checksum does not match, or an address outside the file, sends the sample
// through HDF5's read (ShardReader), whose verdict and message stand.
import Foundation
import SKESLHDF5

final class MappedRows: @unchecked Sendable {
    let store: FeatureStore
    let table: RowTable
    let verifyEveryRead: Bool
    let residentLimit: Int
    private var mappings: [FileMapping?]
    private var verified: [UInt64]
    /// Reads are serialised: the table's block checks, the mappings and the bits change.
    private let lock = NSLock()
    /// Shard files mapped so far (for figures and tests).
    private(set) var mappedShards = 0

    init(store: FeatureStore, table: RowTable, verifyEveryRead: Bool, residentLimit: Int) {
        self.store = store; self.table = table; self.verifyEveryRead = verifyEveryRead; self.residentLimit = residentLimit
        isTouched = [Bool](repeating: false, count: store.shardCount)
        mappings = [FileMapping?](repeating: nil, count: store.shardCount)
        verified = [UInt64](repeating: 0, count: (store.count + 63) / 64)
    }

    /// Split codes of all rows, in global id order (labeled stores).
    func splitCodes() throws -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        return try (0..<table.rows).map { try table.row($0).rowSplit }
    }

    private func mapping(_ s: Int) throws -> FileMapping {
        if let m = mappings[s] { return m }
        let path = store.shardPath(s), entry = store.manifest.shards[s]
        let m: FileMapping
        do { m = try FileMapping(path: path) } catch {
            throw StoreError("\(path): cannot be read (\(error)); the manifest names it as shard \(s) with \(entry.samples) samples. Restore the file or rebuild the store")
        }
        guard m.size == entry.bytes else {
            throw StoreError("\(path): \(m.size) bytes, the manifest says \(entry.bytes): the shard is truncated or was replaced. Restore it or rebuild the store")
        }
        mappings[s] = m
        mappedShards += 1
        return m
    }

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Bytes of shard pages mapped since the last release (an upper bound), and the shards
    /// they lie in.
    private var residentBytes = 0
    private var touched: [Int] = []
    private var isTouched: [Bool]

    /// Keeps the shard pages this process has mapped in (RssFile) under `residentLimit`:
    /// once the rows read since the last release exceed it, every shard touched since
    /// is released with one madvise(MADV_DONTNEED) each. The pages stay in the kernel's
    /// page cache (a later read maps them again: minor faults), but the process's
    /// file-backed resident memory, which RSS-based job limits (Slurm) count, stays
    /// bounded instead of growing to every shard page read so far.
    @inline(__always)
    private func account(_ s: Int, _ bytes: Int) {
        residentBytes += bytes
        if !isTouched[s] { isTouched[s] = true; touched.append(s) }
        guard residentBytes > residentLimit else { return }
        for t in touched {
            if let m = mappings[t] { madvise(UnsafeMutableRawPointer(mutating: m.base), m.size, MADV_DONTNEED) }
            isTouched[t] = false
        }
        touched.removeAll(keepingCapacity: true)
        residentBytes = 0
        releases += 1
    }
    /// Times the shard pages were released (figures, tests).
    private(set) var releases = 0

    /// Copies one feature row out of its chunk. 1: verified and all finite; 0: the
    /// checksum matched but finiteness is left to the batch's check; -1: HDF5 must decide.
    @inline(__always)
    private func feature(_ m: FileMapping, chunk: Int, rowsPerChunk k: Int, row r: Int, rowBytes: Int, checksum: Bool,
                         into dst: UnsafeMutablePointer<Float>) -> Int {
        let chunkBytes = k * rowBytes + (checksum ? 4 : 0)
        guard chunk >= 0, chunk <= m.size - chunkBytes else { return -1 }
        let src = m.base + chunk + (r % k) * rowBytes
        if k == 1 {
            let res = fletcher32Copy(from: src, to: UnsafeMutableRawPointer(dst), bytes: rowBytes)
            if checksum {
                let stored = UInt32(littleEndian: src.loadUnaligned(fromByteOffset: rowBytes, as: UInt32.self))
                guard fletcher32Matches(stored: stored, sum1: res.sum1, sum2: res.sum2) else { return -1 }
            }
            return res.finite ? 1 : 0
        }
        // Several rows per chunk (small rows): the checksum covers the whole chunk.
        let res = fletcher32Residues(m.base + chunk, bytes: k * rowBytes)
        if checksum {
            let stored = UInt32(littleEndian: m.base.loadUnaligned(fromByteOffset: chunk + k * rowBytes, as: UInt32.self))
            guard fletcher32Matches(stored: stored, sum1: res.sum1, sum2: res.sum2) else { return -1 }
        }
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: rowBytes)
        return res.finite ? 1 : 0
    }

    /// Reads sample `g` into `slot` of `b` and checks it; a bad sample is a SampleProblem
    /// naming the shard file, the row and the global id.
    func read(_ g: Int64, into b: StoreBatch, slot: Int, text: Bool) throws {
        lock.lock(); defer { lock.unlock() }
        let gi = Int(g)
        let (s, r) = store.locate(g)
        let row = try table.row(gi)
        let sh = table.shards[s]
        let m = try mapping(s)
        let spec = store.spec
        let aDst = b.audio.baseAddress! + slot * spec.audioRow, vDst = b.video.baseAddress! + slot * spec.videoRow
        let bit: UInt64 = 1 << UInt64(gi & 63)
        var finite = false
        let aAt = row.rowAudioChunk + (r % sh.audioRowsPerChunk) * 4 * spec.audioRow
        let vAt = row.rowVideoChunk + (r % sh.videoRowsPerChunk) * 4 * spec.videoRow
        if !verifyEveryRead && verified[gi >> 6] & bit != 0 {
            UnsafeMutableRawPointer(aDst).copyMemory(from: m.base + aAt, byteCount: 4 * spec.audioRow)
            UnsafeMutableRawPointer(vDst).copyMemory(from: m.base + vAt, byteCount: 4 * spec.videoRow)
            finite = true
        } else {
            let a = feature(m, chunk: row.rowAudioChunk, rowsPerChunk: sh.audioRowsPerChunk, row: r, rowBytes: 4 * spec.audioRow,
                            checksum: sh.audioChecksum, into: aDst)
            let v = a < 0 ? -1 : feature(m, chunk: row.rowVideoChunk, rowsPerChunk: sh.videoRowsPerChunk, row: r, rowBytes: 4 * spec.videoRow,
                                         checksum: sh.videoChecksum, into: vDst)
            if a < 0 || v < 0 {
                // HDF5 decides (and names the problem) for this sample.
                try store.openShard(s, verifyEveryRead: true).read(row: r, count: 1, into: b, slot: slot, text: text)
                return
            }
            finite = a == 1 && v == 1
        }
        // Pages this read may have mapped: its two chunks (small rows share a chunk of
        // many rows) and the kernel's fault-around (up to 16 pages about a faulting page).
        account(s, sh.audioRowsPerChunk * 4 * spec.audioRow + sh.videoRowsPerChunk * 4 * spec.videoRow + 2 * 16 * MappedRows.pageSize)
        b.audioLengths[slot] = row.rowAudioLength
        b.videoLengths[slot] = row.rowVideoLength
        if let l = b.labels, let sp = b.splits { l[slot] = row.rowLabel; sp[slot] = row.rowSplit }
        var uid: String? = nil
        if text || spec.tokens != nil {
            // Text entries (and token ids) are read with pread (RowTable.text).
            let t = try table.text(gi, row: row, shard: s)
            if let L = spec.tokens, let tok = b.tokens, let tl = b.tokenLengths {
                UnsafeMutableRawPointer(tok.baseAddress! + slot * L).copyMemory(from: t.tokens, byteCount: 4 * L)
                tl[slot] = row.rowTokenLength
            }
            if text { uid = t.id; b.utteranceIds[slot] = t.id; b.transcripts[slot] = t.transcript }
        }
        b.globalIds[slot] = g
        if let reason = b.check(slot: slot, labelRange: store.manifest.labelRange, text: text, featuresFinite: finite) {
            throw SampleProblem(file: store.shardPath(s), row: r, globalId: g, utteranceId: uid, reason: reason)
        }
        if finite { verified[gi >> 6] |= bit }
    }
}
