import Foundation
import XCTest
@testable import SKESLStore

final class LoaderTests: XCTestCase {
    func testEpochOrderIsAPermutationKeyedBySeedAndEpoch() {
        for n in [1, 2, 3, 7, 100, 1000, 4097] {
            let o = EpochOrder(count: n, seed: 3, epoch: 1)
            XCTAssertEqual((0..<n).map(o.element).sorted(), Array(0..<n), "n = \(n)")
        }
        let a = (0..<1000).map(EpochOrder(count: 1000, seed: 3, epoch: 0).element)
        let b = (0..<1000).map(EpochOrder(count: 1000, seed: 3, epoch: 1).element)
        let c = (0..<1000).map(EpochOrder(count: 1000, seed: 4, epoch: 0).element)
        XCTAssertEqual(a, (0..<1000).map(EpochOrder(count: 1000, seed: 3, epoch: 0).element))
        XCTAssertNotEqual(a, b); XCTAssertNotEqual(a, c)
        // Shuffled: few fixed points, and positions spread over the whole range.
        XCTAssertLessThan(zip(a, 0..<1000).filter { $0 == $1 }.count, 10)
        XCTAssertGreaterThan(a[0..<100].max()! - a[0..<100].min()!, 800)
    }

    /// Every sample is read exactly once per epoch by exactly one rank, for several shard
    /// counts, world sizes, micro-batch counts and batch sizes; the prefetching iterator
    /// yields exactly what samples(forStep:) says.
    func testEverySampleIsSeenExactlyOncePerEpochByOneRank() throws {
        let n = 37
        for perShard in [37, 10, 4] {
            let dir = tempDir(self, "s\(perShard)")
            try makeSynthStore(dir, n: n, perShard: perShard)
            let store = try FeatureStore(directory: dir)
            for g in [8, 7] {
                for micro in [1, 2] {
                    let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: g, microBatches: micro, seed: 11, prefetchDepth: 2))
                    for world in [1, 2, 3, 5] {
                        var seen: [Int64] = []
                        for rank in 0..<world {
                            let it = try loader.batches(rank: rank, worldSize: world, untilEpoch: 1)
                            var step = 0, k = 0
                            while let b = try it.next() {
                                XCTAssertEqual(b.step, step); XCTAssertEqual(b.micro, k)
                                let expect = loader.samples(forStep: step, epoch: 0, rank: rank, worldSize: world, micro: k)
                                XCTAssertEqual(Array(b.globalIds[0..<b.count]), expect)
                                seen += b.globalIds[0..<b.count]
                                k += 1; if k == micro { k = 0; step += 1 }
                            }
                            XCTAssertEqual(step, loader.stepsPerEpoch)
                        }
                        XCTAssertEqual(seen.sorted(), (0..<Int64(n)).map { $0 }, "shards of \(perShard), G \(g), A \(micro), W \(world)")
                    }
                }
            }
        }
    }

    /// W ranks see what one rank with W-way accumulation sees, micro-batch for micro-batch.
    func testRanksEqualAccumulationSteps() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 29, perShard: 8)
        let store = try FeatureStore(directory: dir)
        let one = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 6, microBatches: 3, seed: 2))
        let three = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 6, microBatches: 1, seed: 2))
        for step in 0..<one.stepsPerEpoch {
            for r in 0..<3 {
                XCTAssertEqual(one.samples(forStep: step, epoch: 4, rank: 0, worldSize: 1, micro: r),
                               three.samples(forStep: step, epoch: 4, rank: r, worldSize: 3))
            }
        }
    }

    /// A cursor taken with 2 ranks resumes with 3 ranks: the epoch still covers every sample once.
    func testCursorResumesAcrossWorldSizes() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 41, perShard: 9)
        let store = try FeatureStore(directory: dir)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 6, seed: 5))
        var seen: [Int64] = []
        var cursor = LoaderCursor(epoch: 0, position: 0)
        for rank in 0..<2 {
            let it = try loader.batches(rank: rank, worldSize: 2, from: LoaderCursor(epoch: 1, position: 0))
            for _ in 0..<3 {   // three steps, then the job stops
                let b = try it.next()!
                seen += b.globalIds[0..<b.count]
                cursor = b.cursorAfterStep
            }
            it.close()
        }
        XCTAssertEqual(cursor, LoaderCursor(epoch: 1, position: 18))
        for rank in 0..<3 {
            let it = try loader.batches(rank: rank, worldSize: 3, from: cursor, untilEpoch: 2)
            while let b = try it.next() { XCTAssertEqual(b.epoch, 1); seen += b.globalIds[0..<b.count] }
        }
        XCTAssertEqual(seen.sorted(), (0..<41).map { Int64($0) })
        // Epoch 1's order is the one a fresh run sees.
        XCTAssertEqual(loader.samples(forStep: 3, epoch: 1, rank: 0, worldSize: 1),
                       (18..<24).map { loader.globalId(epoch: 1, position: $0) })
        // A cursor past the store is refused with a message.
        XCTAssertTrue(thrownMessage { _ = try loader.batches(rank: 0, worldSize: 1, from: LoaderCursor(epoch: 0, position: 99)) }.contains("outside"))
    }

    func testSplitSelectionAndDropRemainder() throws {
        let dir = tempDir(self)
        let m = try makeSynthStore(dir, n: 50, perShard: 13)
        let store = try FeatureStore(directory: dir)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 4, split: .train, dropRemainder: true))
        XCTAssertEqual(loader.count, m.splits!["train"])
        XCTAssertEqual(loader.stepsPerEpoch, loader.count / 4)
        let it = try loader.batches(rank: 0, worldSize: 1, untilEpoch: 1)
        var n = 0
        while let b = try it.next() {
            XCTAssertEqual(b.count, 4)
            XCTAssertTrue(b.splits![0..<b.count].allSatisfy { $0 == Split.train.rawValue })
            n += b.count
        }
        XCTAssertEqual(n, loader.count / 4 * 4)
    }

    func testIteratorMemoryIsABoundedPoolAndCloseStopsTheThread() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 30, perShard: 7)
        let loader = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 4, prefetchDepth: 3))
        let it = try loader.batches(rank: 0, worldSize: 1)   // endless
        var ids = Set<ObjectIdentifier>()
        for _ in 0..<40 { ids.insert(ObjectIdentifier(try it.next()!)) }
        XCTAssertLessThanOrEqual(ids.count, 4)   // depth + 1 buffers, reused
        it.close()
        XCTAssertNil(try it.next())
    }
}
