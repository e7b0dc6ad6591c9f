// Streams a store to the ranks of a data-parallel run.
//
// Epoch e visits the store's samples (or one split's) in EpochOrder(seed, e). Step s of
// an epoch consumes global positions [s*G, (s+1)*G) (G = global batch size; the last
// step is shorter unless dropRemainder); that slice is cut into W*A contiguous parts
// (W ranks, A micro-batches per rank) and rank r's micro-batch k is part r*A + k. So
// every sample is read exactly once per epoch by exactly one rank, and W ranks see
// exactly what one rank with W*A accumulation steps would see.
import Foundation
import SKESLHDF5
import SKESLLog

public struct LoaderConfig: Sendable {
    public var globalBatchSize = 32
    /// Accumulation steps each rank splits its share of a step into.
    public var microBatches = 1
    public var seed: UInt64 = 0
    public var shuffle = true
    /// Only samples of this split (labeled stores); nil = all samples.
    public var split: Split? = nil
    /// Batches the background thread may have ready ahead of the consumer.
    public var prefetchDepth = 2
    /// Skip (and count, and log) bad samples and unreadable shards instead of failing.
    public var skipBadSamples = false
    /// Drop an epoch's last step when it holds fewer than G samples.
    public var dropRemainder = false
    /// Shard files kept open at once. Each open HDF5 file costs about 1.2 MB (HDF5's
    /// per-file metadata structures), so this bounds memory whatever the shard count;
    /// a read from a closed shard reopens it (about 0.2 ms; figures in the doc).
    public var maxOpenShards = 2
    /// Read utterance ids and transcripts (off when the text comes from elsewhere, e.g.
    /// the frozen-BERT cache; bad-sample messages then name the row and global id).
    public var readText = true
    /// Recompute each feature row's Fletcher32 on every read, rather than on its first
    /// read after its shard is opened (docs/feature-store.md, "Reading rows").
    public var verifyEveryRead = false
    /// Read through the store's row table when it has one (row-table.bin): a read then
    /// costs the same whatever the shard count (docs/feature-store.md, "Row table").
    /// Off: every read goes through HDF5 shard readers, as for stores without a table.
    public var useRowTable = true
    /// Shard-file pages a row-table loader keeps mapped in this process (RssFile) before
    /// releasing them (they stay in the page cache): bounds the file-backed resident
    /// memory of a run over a corpus larger than this (MappedRows.account).
    public var residentShardBytes = 2048 << 20
    public init(globalBatchSize: Int = 32, microBatches: Int = 1, seed: UInt64 = 0, shuffle: Bool = true,
                split: Split? = nil, prefetchDepth: Int = 2, skipBadSamples: Bool = false, dropRemainder: Bool = false,
                maxOpenShards: Int = 2) {
        self.maxOpenShards = maxOpenShards
        self.globalBatchSize = globalBatchSize; self.microBatches = microBatches; self.seed = seed
        self.shuffle = shuffle; self.split = split; self.prefetchDepth = prefetchDepth
        self.skipBadSamples = skipBadSamples; self.dropRemainder = dropRemainder
    }
}

public final class StoreLoader: @unchecked Sendable {
    public let store: FeatureStore
    public let config: LoaderConfig
    /// Samples per epoch (after selecting a split).
    public let count: Int
    private let selected: [Int64]?          // global ids of the split, when filtering
    private let badShards: Set<Int>
    /// Reads through the row table (nil: through HDF5 shard readers).
    let mapped: MappedRows?
    /// True when reads go through the store's row table.
    public var readsRowTable: Bool { mapped != nil }
    /// Shard files mapped so far by the row-table reads.
    public var mappedShards: Int { mapped?.mappedShards ?? 0 }
    /// Times the mapped shard pages were released (residentShardBytes).
    public var residentReleases: Int { mapped?.releases ?? 0 }
    /// Open shard readers, most recently used last (at most maxOpenShards).
    private var open: [ShardReader] = []
    private let openLock = NSLock()
    private let lock = NSLock()
    private var skippedCount = 0
    /// Where skip messages go (stderr by default).
    public let log: @Sendable (String) -> Void

    public init(store: FeatureStore, config: LoaderConfig,
                log: @escaping @Sendable (String) -> Void = { Log.warning($0) }) throws {
        guard config.globalBatchSize >= 1 else { throw StoreError("global batch size must be at least 1 (got \(config.globalBatchSize))") }
        guard config.microBatches >= 1 else { throw StoreError("micro-batches must be at least 1 (got \(config.microBatches))") }
        guard config.maxOpenShards >= 1 else { throw StoreError("max open shards must be at least 1 (got \(config.maxOpenShards))") }
        guard config.prefetchDepth >= 1 else { throw StoreError("prefetch depth must be at least 1 (got \(config.prefetchDepth))") }
        if config.split != nil && !store.spec.labeled {
            throw StoreError("\(store.directory): the store is unlabeled and has no splits; drop the split option")
        }
        self.store = store; self.config = config; self.log = log
        var ids: [Int64]? = config.split == nil ? nil : []
        var skippedAtOpen = 0
        var bad = Set<Int>()
        var rows: MappedRows? = nil
        var table: RowTable? = nil
        if config.useRowTable {
            do { table = try RowTable.open(directory: store.directory, manifest: store.manifest) } catch let e as RowTableStale {
                log("\(e): reading through HDF5")
            }
        }
        if let table {
            // With a table, a shard is checked here by its size (one stat each); its
            // structure was checked when the table was built, and its rows are verified
            // on first read. A shard changed after the table was written (edited in
            // place, restored from elsewhere) makes the table stale: read through HDF5.
            var tableStat = stat()
            _ = stat(table.path, &tableStat)
            var stale: [String] = []
            for i in 0..<store.shardCount {
                do {
                    let st = try ShardReader.checkFile(path: store.shardPath(i), index: i, entry: store.manifest.shards[i])
                    if (st.st_mtim.tv_sec, st.st_mtim.tv_nsec) > (tableStat.st_mtim.tv_sec, tableStat.st_mtim.tv_nsec) {
                        stale.append(store.manifest.shards[i].file)
                    }
                } catch {
                    guard config.skipBadSamples else { throw error }
                    bad.insert(i)
                    skippedAtOpen += store.manifest.shards[i].samples
                    log("skipping all \(store.manifest.shards[i].samples) samples of shard \(i): \(error)")
                }
            }
            if stale.isEmpty {
                rows = MappedRows(store: store, table: table, verifyEveryRead: config.verifyEveryRead, residentLimit: config.residentShardBytes)
                if let split = config.split {
                    for (g, c) in try rows!.splitCodes().enumerated() where c == split.rawValue && !bad.contains(store.locate(Int64(g)).shard) {
                        ids!.append(Int64(g))
                    }
                }
            } else {
                log("\(table.path): \(stale.count) shard file(s) changed after it was written (\(stale.prefix(3).joined(separator: ", "))\(stale.count > 3 ? ", …" : "")): reading through HDF5. Check the store and rebuild the table with `\(RowTableFormat.rebuildHint(store.directory))`")
                bad = []; skippedAtOpen = 0
            }
        } else if config.useRowTable && store.shardCount > config.maxOpenShards
                    && !FileManager.default.fileExists(atPath: store.directory + "/" + RowTableFormat.fileName) {
            log("\(store.directory): no row table (\(RowTableFormat.fileName)); reading through HDF5, which reopens shards when more than \(config.maxOpenShards) are in use. Add one with `\(RowTableFormat.rebuildHint(store.directory))`")
        }
        mapped = rows
        // Without a table, every shard is opened once here to check its structure (and
        // read its split codes); afterwards at most maxOpenShards stay open.
        for i in 0..<store.shardCount where rows == nil {
            let r: ShardReader
            do { r = try store.openShard(i, verifyEveryRead: config.verifyEveryRead) } catch {
                guard config.skipBadSamples else { throw error }
                bad.insert(i)
                skippedAtOpen += store.manifest.shards[i].samples
                log("skipping all \(store.manifest.shards[i].samples) samples of shard \(i): \(error)")
                continue
            }
            if let split = config.split {
                for (row, c) in try r.splitCodes().enumerated() where c == split.rawValue { ids!.append(store.offsets[i] + Int64(row)) }
            }
            if open.count < config.maxOpenShards { open.append(r) }
        }
        badShards = bad
        selected = ids
        count = ids?.count ?? store.count
        skippedCount = config.split == nil ? skippedAtOpen : 0
    }

    /// Bad samples skipped so far (including those of shards that could not be opened).
    public var skipped: Int { lock.lock(); defer { lock.unlock() }; return skippedCount }

    public var stepsPerEpoch: Int {
        let g = config.globalBatchSize
        return config.dropRemainder ? count / g : (count + g - 1) / g
    }

    /// Largest micro-batch a rank can get with `worldSize` ranks.
    public func maxLocalBatch(worldSize: Int) -> Int {
        let parts = worldSize * config.microBatches
        return (config.globalBatchSize + parts - 1) / parts
    }

    /// Positions of step `step` of an epoch that starts consuming at `start` (0, or a
    /// resumed cursor's position).
    public func stepRange(step: Int, start: Int = 0) -> Range<Int> {
        let lo = min(start + step * config.globalBatchSize, count)
        return lo..<min(lo + config.globalBatchSize, count)
    }

    /// This rank's positions of a step range, for micro-batch `micro`.
    public func positions(of stepRange: Range<Int>, rank: Int, worldSize: Int, micro: Int = 0) -> Range<Int> {
        contiguousPart(stepRange, parts: worldSize * config.microBatches, index: rank * config.microBatches + micro)
    }

    /// The global sample id at position `p` of epoch `epoch`.
    public func globalId(epoch: Int, position p: Int) -> Int64 {
        let i = EpochOrder(count: count, seed: config.seed, epoch: epoch, shuffle: config.shuffle).element(p)
        return selected?[i] ?? Int64(i)
    }

    /// Global sample ids rank `rank` of `worldSize` reads at step `step` (micro-batch `micro`).
    public func samples(forStep step: Int, epoch: Int, rank: Int, worldSize: Int, micro: Int = 0) -> [Int64] {
        let order = EpochOrder(count: count, seed: config.seed, epoch: epoch, shuffle: config.shuffle)
        return positions(of: stepRange(step: step), rank: rank, worldSize: worldSize, micro: micro).map {
            let i = order.element($0); return selected?[i] ?? Int64(i)
        }
    }

    public func makeBatch(worldSize: Int) -> StoreBatch {
        StoreBatch(capacity: maxLocalBatch(worldSize: worldSize), spec: store.spec)
    }

    /// Reads the samples at `positions` of epoch `epoch` into `batch` (synchronously).
    /// Consecutive rows of one shard are read with one hyperslab read.
    public func fill(_ batch: StoreBatch, epoch: Int, positions: Range<Int>) throws {
        precondition(positions.count <= batch.capacity, "batch capacity \(batch.capacity) < \(positions.count) samples")
        batch.reset()
        let order = EpochOrder(count: count, seed: config.seed, epoch: epoch, shuffle: config.shuffle)
        var ids = [Int64](); ids.reserveCapacity(positions.count)
        for p in positions { let i = order.element(p); ids.append(selected?[i] ?? Int64(i)) }
        var slot = 0, k = 0
        if let m = mapped {
            for g in ids { slot += try readMapped(m, g, into: batch, slot: slot) }
            batch.setCount(slot)
            return
        }
        while k < ids.count {
            let (shard, row) = store.locate(ids[k])
            var n = 1
            while k + n < ids.count && ids[k + n] == ids[k] + Int64(n) && row + n < store.manifest.shards[shard].samples { n += 1 }
            slot += try readRun(shard: shard, row: row, count: n, into: batch, slot: slot)
            k += n
        }
        batch.setCount(slot)
    }

    /// The reader of shard `i`, opening it (and closing the least recently used one) if needed.
    private func reader(_ i: Int) throws -> ShardReader {
        openLock.lock(); defer { openLock.unlock() }
        if let k = open.lastIndex(where: { $0.index == i }) {
            let r = open[k]
            if k != open.count - 1 { open.remove(at: k); open.append(r) }
            return r
        }
        let r = try store.openShard(i, verifyEveryRead: config.verifyEveryRead)
        if open.count >= config.maxOpenShards { open.removeFirst() }
        open.append(r)
        return r
    }

    /// Reads a run of rows; a failed run is re-read row by row, so that the error names
    /// the sample at fault, or with skipBadSamples its bad rows are skipped. Returns the
    /// rows kept.
    private func readRun(shard: Int, row: Int, count n: Int, into b: StoreBatch, slot: Int) throws -> Int {
        if badShards.contains(shard) {
            b.skipped += n   // counted when the shard failed to open
            return 0
        }
        let reader = try self.reader(shard)
        do {
            try reader.read(row: row, count: n, into: b, slot: slot, text: config.readText)
            return n
        } catch let p as SampleProblem {
            if n > 1 {
                var kept = 0
                for k in 0..<n { kept += try readRun(shard: shard, row: row + k, count: 1, into: b, slot: slot + kept) }
                return kept
            }
            try skip(p, b)
            return 0
        }
    }

    /// One sample through the row table; returns 1, or 0 when it was skipped.
    private func readMapped(_ m: MappedRows, _ g: Int64, into b: StoreBatch, slot: Int) throws -> Int {
        if !badShards.isEmpty && badShards.contains(store.locate(g).shard) { b.skipped += 1; return 0 }
        do {
            try m.read(g, into: b, slot: slot, text: config.readText)
            return 1
        } catch let p as SampleProblem {
            try skip(p, b)
            return 0
        }
    }

    /// Counts and logs a bad sample with skipBadSamples, else throws it.
    private func skip(_ p: SampleProblem, _ b: StoreBatch) throws {
        guard config.skipBadSamples else { throw p }
        lock.lock(); skippedCount += 1; lock.unlock()
        b.skipped += 1
        log("skipped bad sample: \(p.file): row \(p.row), global id \(p.globalId)\(p.utteranceId.map { " (\"\($0)\")" } ?? ""): \(p.reason)")
    }

    /// A prefetching iterator over this rank's micro-batches, from `cursor` on, for
    /// epochs < `untilEpoch` (nil: forever).
    public func batches(rank: Int, worldSize: Int, from cursor: LoaderCursor = LoaderCursor(epoch: 0, position: 0),
                        untilEpoch: Int? = nil) throws -> BatchIterator {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else { throw StoreError("rank \(rank) is outside 0..<\(worldSize)") }
        guard cursor.epoch >= 0, (0...count).contains(cursor.position) else {
            throw StoreError("cursor \(cursor) is outside this store's epochs of \(count) samples (a cursor from another store or split?)")
        }
        return BatchIterator(loader: self, rank: rank, worldSize: worldSize, cursor: cursor, untilEpoch: untilEpoch)
    }
}
