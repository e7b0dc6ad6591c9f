// Regression test for thread lifetimes (issue: "Attempted to read an unowned reference but
// object ... was already destroyed"). The prefetch thread used to capture the iterator
// unowned; a consumer that dropped the iterator at the wrong moment made the thread read an
// object whose deinit had begun. The window is short, so the test makes thousands of
// iterators and drops each at a different point, while busy threads keep every core loaded
// (a loaded machine is where the window opens wide).
import Foundation
import TestSupport
import XCTest
@testable import SKESLStore

final class TeardownTests: XCTestCase {
    /// Create, drain partly or fully, and drop thousands of iterators; each way of ending
    /// (before the first batch, mid-epoch, at `.end`, after `.end`, after an error, with or
    /// without an explicit close) is taken many times.
    func testIteratorsDroppedAtAnyPointUnderLoad() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 24, perShard: 8)
        let store = try FeatureStore(directory: dir)
        let badDir = tempDir(self, "bad")
        try storeWithNaN(badDir)
        let bad = try FeatureStore(directory: badDir)
        let load = BusyLoad()
        defer { load.stop() }
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 4, microBatches: 1, seed: 1, prefetchDepth: 1))
        let badLoader = try StoreLoader(store: bad, config: LoaderConfig(globalBatchSize: 4, microBatches: 1, seed: 1, shuffle: false, prefetchDepth: 1))
        var ended = 0, failed = 0
        for cycle in 0..<1800 {
            let kind = cycle % 6
            if kind == 5 {
                // Ends in an error: the bad sample is in the second batch.
                let it = try badLoader.batches(rank: 0, worldSize: 1, untilEpoch: 1)
                do { while try it.next() != nil {} } catch { failed += 1 }
                if cycle % 12 == 5 { it.close() }
                continue
            }
            let it = try loader.batches(rank: 0, worldSize: 1, untilEpoch: 1)
            switch kind {
            case 0: break                                    // dropped before any batch
            case 1: _ = try it.next()                        // mid-epoch
            case 2: for _ in 0..<3 { _ = try it.next() }     // later mid-epoch
            case 3: while try it.next() != nil {}; ended += 1   // right at .end
            default:
                while try it.next() != nil {}
                XCTAssertNil(try it.next())                   // after .end
                it.close(); it.close()                        // closing twice is harmless
                ended += 1
            }
        }
        XCTAssertEqual(failed, 300)
        XCTAssertEqual(ended, 600)
    }

    private func storeWithNaN(_ dir: String) throws {
        let w = try StoreWriter(directory: dir, name: "nan", spec: smallSpec, samplesPerShard: 4)
        let gen = SynthGenerator(SynthConfig(samples: 8, spec: smallSpec, seed: 1))
        for i in 0..<8 {
            var a = [Float](repeating: 0, count: smallSpec.audioRow), v = [Float](repeating: 0, count: smallSpec.videoRow)
            let m = gen.sample(i, audio: &a, video: &v)
            if i == 5 { a[0] = .nan }
            try w.append(StoreSample(utteranceId: m.utteranceId, transcript: m.transcript, audio: a, audioLength: m.audioLength,
                                     video: v, videoLength: m.videoLength, label: m.label, split: m.split))
        }
        try w.finish()
    }
}
