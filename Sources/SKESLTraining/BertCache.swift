// The frozen-BERT cache (opt-in: data.bertCache). With BERT frozen, its [MASK]-row
// output depends only on the masked ids; so it is computed once, in a distributed pass,
// for every sample: one row when the mask is fixed (a lexicon word), one row per
// candidate position when it is drawn at random each epoch. Later epochs read rows
// instead of running BERT. Unlike the reference, BERT then runs without dropout (eval
// mode) — docs/performance.md measures what that changes.
//
// Layout: <store>/bert-cache/cache.json (the key: BERT weights, tokenizer, lexicon, text
// length, store) and one cache-NNNNN.h5 per store shard: offset int64 [n+1], count
// int32 [n], target float32 [n], mask_position int32 [rows], rows float32 [rows, H].
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLHDF5
import SKESLKernels
import SKESLModel
import SKESLStore
import SKESLText

public struct BertCacheKey: Codable, Equatable, Sendable {
    public var version = 1
    public var store: String
    public var bert: String
    public var vocabulary: String
    public var lexicon: String
    public var textLength: Int
    public var hidden: Int
}

public enum BertCache {
    public static func directory(_ store: FeatureStore) -> String { store.directory + "/bert-cache" }

    public static func key(net: SKESLNetwork, store: FeatureStore, text: TextPipeline, storeFingerprint: String) -> BertCacheKey {
        let bertCount = net.layout.entries.filter { $0.group == .bert }.reduce(0) { $0 + $1.count }
        let bert = Checkpoint.checksum([(UnsafePointer(net.params), bertCount)])
        let v = text.tokenizer.tokens.reduce(FNV1a64.offsetBasis) { FNV1a64.fold($0, fnv1a64($1)) }
        return BertCacheKey(store: storeFingerprint, bert: String(format: "%016llx", bert), vocabulary: String(format: "%016llx", v),
                            lexicon: text.masker.map { String(format: "%016llx", $0.lexiconFingerprint) } ?? "",
                            textLength: text.length, hidden: net.config.bert.hiddenSize)
    }

    /// Whether a complete cache for `key` exists.
    public static func isValid(_ store: FeatureStore, key: BertCacheKey) -> Bool {
        guard let d = FileManager.default.contents(atPath: directory(store) + "/cache.json"),
              let k = try? JSONDecoder().decode(BertCacheKey.self, from: d) else { return false }
        return k == key
    }

    /// Builds the cache: store shard i is encoded by rank i mod W. Every rank must call it.
    public static func build(net: SKESLNetwork, store: FeatureStore, text: TextPipeline, comm: Communicator,
                             key: BertCacheKey, batch: Int = 32, say: (String) -> Void) throws {
        guard let masker = text.masker else { throw ConfigError("the BERT cache is for pretraining (it needs the lexicon)") }
        let dir = directory(store)
        if comm.rank == 0 {
            unlink(dir + "/cache.json")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if comm.size > 1 { try comm.barrier() }
        let H = net.config.bert.hiddenSize, L = text.length
        let t0 = MonotonicClock().now()
        var encoded = 0
        let ids = UnsafeMutablePointer<Int32>.allocate(capacity: batch * L), types = UnsafeMutablePointer<Int32>.allocate(capacity: batch * L)
        let att = UnsafeMutablePointer<Int32>.allocate(capacity: batch * L), pos = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        let sids = UnsafeMutablePointer<Int64>.allocate(capacity: batch)
        let dummy = UnsafeMutablePointer<Float>.allocate(capacity: 1), dummyI = UnsafeMutablePointer<Int32>.allocate(capacity: batch)
        defer { ids.deallocate(); types.deallocate(); att.deallocate(); pos.deallocate(); sids.deallocate(); dummy.deallocate(); dummyI.deallocate() }
        sids.initialize(repeating: 0, count: batch); dummyI.initialize(repeating: 0, count: batch)
        for shard in stride(from: comm.rank, to: store.shardCount, by: comm.size) {
            let f = try H5File.open(store.shardPath(shard))
            let transcripts = try f.readStrings(ShardSchema.transcript)
            let n = transcripts.count
            var offset = [Int64](repeating: 0, count: n + 1), count = [Int32](repeating: 0, count: n)
            var target = [Float](repeating: 0, count: n), maskPos: [Int32] = []
            var rows: [Float] = []
            rows.reserveCapacity(n * H)
            var pending = 0
            func flush() throws {
                guard pending > 0 else { return }
                let b = Batch(size: pending, textLength: L, audioFrames: 0, videoFrames: 0, inputIds: ids, tokenTypeIds: types,
                              attentionMask: att, audio: dummy, video: dummy, audioLengths: dummyI, videoLengths: dummyI,
                              maskPositions: pos, targets: dummy, sampleIds: sids)
                let r = try net.encodeMaskRows(b)
                rows.append(contentsOf: UnsafeBufferPointer(start: r, count: pending * H))
                encoded += pending
                pending = 0
            }
            for i in 0..<n {
                let pieces = text.tokenizer.wordPieceIds(transcripts[i])
                let c = pieces.withUnsafeBufferPointer { masker.candidateCount(ids: $0) }
                offset[i + 1] = offset[i] + Int64(c)
                count[i] = Int32(c)
                for k in 0..<c {
                    let r = pieces.withUnsafeBufferPointer {
                        masker.mask(ids: $0, seed: 0, epoch: 0, sample: 0, inputIds: ids + pending * L, tokenTypeIds: types + pending * L,
                                    attentionMask: att + pending * L, randomChoice: c > 1 ? k : nil)
                    }
                    if k == 0 { target[i] = r.target }
                    pos[pending] = Int32(r.maskPosition)
                    maskPos.append(Int32(r.maskPosition))
                    pending += 1
                    if pending == batch { try flush() }
                }
            }
            try flush()
            let path = dir + String(format: "/cache-%05d.h5", shard)
            let out = try H5File.create(path + ".tmp")
            try out.write("offset", offset)
            try out.write("count", count)
            try out.write("target", target)
            try out.write("mask_position", maskPos)
            try out.write("rows", rows, shape: [maskPos.count, H])
            try out.close()
            guard rename(path + ".tmp", path) == 0 else { throw ConfigError("\(path): cannot rename the cache shard into place") }
            say(String(format: "bert cache: shard %d of %d encoded (%d rows, %.0f rows/s)", shard + 1, store.shardCount,
                       maskPos.count, Double(encoded) / max(MonotonicClock().now() - t0, 1e-9)))
        }
        if comm.size > 1 { try comm.barrier() }
        if comm.rank == 0 {
            let data = try JSONEncoder().encode(key)
            FileManager.default.createFile(atPath: dir + "/cache.json", contents: data)
        }
        if comm.size > 1 { try comm.barrier() }
    }

    /// Reads cached rows for the samples of a batch.
    public final class Reader {
        let store: FeatureStore
        let H: Int
        struct Shard { var offset: [Int64]; var count: [Int32]; var target: [Float]; var maskPos: [Int32]; var rows: [Float]?; var file: H5Dataset? }
        var shards: [Shard] = []

        /// Holds every shard's rows in memory when they fit in `memoryMB`; else reads each
        /// row from its file when a batch needs it.
        public init(store: FeatureStore, key: BertCacheKey, memoryMB: Double) throws {
            guard BertCache.isValid(store, key: key) else {
                throw ConfigError("\(BertCache.directory(store)): no complete BERT cache for this model, tokenizer and store; it is built when data.bertCache is on")
            }
            self.store = store
            H = key.hidden
            var bytes = 0.0
            for i in 0..<store.shardCount {
                let f = try H5File.open(BertCache.directory(store) + String(format: "/cache-%05d.h5", i))
                bytes += Double(try f.shape("rows").reduce(1, *)) * 4
            }
            let inMemory = bytes <= memoryMB * 1_048_576
            for i in 0..<store.shardCount {
                let f = try H5File.open(BertCache.directory(store) + String(format: "/cache-%05d.h5", i))
                let s = Shard(offset: try f.read("offset", as: Int64.self).values, count: try f.read("count", as: Int32.self).values,
                              target: try f.read("target", as: Float.self).values,
                              maskPos: try f.read("mask_position", as: Int32.self).values,
                              rows: inMemory ? try f.read("rows", as: Float.self).values : nil,
                              file: inMemory ? nil : try f.dataset("rows"))
                guard s.count.count == store.manifest.shards[i].samples else {
                    throw ConfigError("\(f.path): \(s.count.count) samples, the store shard has \(store.manifest.shards[i].samples): rebuild the cache")
                }
                shards.append(s)
            }
        }

        /// Rows [B, H], mask positions and targets of the samples `ids`; a random mask takes
        /// the candidate the keyed generator draws for (seed, epoch, sample).
        public func fill(rows: UnsafeMutablePointer<Float>, maskPositions: UnsafeMutablePointer<Int32>,
                         targets: UnsafeMutablePointer<Float>, ids: [Int64], count n: Int, masker: SentimentMasker,
                         seed: UInt64, epoch: Int) throws {
            for i in 0..<n {
                let (si, row) = store.locate(ids[i])
                let s = shards[si]
                let c = Int(s.count[row])
                let k = c > 1 ? masker.randomIndex(candidates: c, seed: seed, epoch: UInt64(epoch), sample: UInt64(bitPattern: ids[i])) : 0
                let r = Int(s.offset[row]) + k
                maskPositions[i] = s.maskPos[r]
                targets[i] = s.target[row]
                if let all = s.rows {
                    all.withUnsafeBufferPointer { (rows + i * H).update(from: $0.baseAddress! + r * H, count: H) }
                } else {
                    try s.file!.readRows(start: r, count: 1, into: rows + i * H)
                }
            }
        }
    }
}
