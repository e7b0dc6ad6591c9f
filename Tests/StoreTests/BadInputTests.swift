import Foundation
import XCTest
import SKESLHDF5
@testable import SKESLStore

/// Broken stores: each defect is found by verify and by the loader with a message naming
/// the file and the sample; --skip-bad-samples skips and counts instead.
let oneRowPerChunk = StoreLayout(featureChunkBytes: 1)

final class BadInputTests: XCTestCase {
    /// A 12-sample store (shards of 5) whose sample at global id 6 (shard 1, row 1) is changed by `edit`.
    /// `layout`: the default packs these small rows several to a chunk (read through HDF5);
    /// `oneRowPerChunk` stores them as reference-size rows are stored (read directly from
    /// their chunks, H5RowReader.readFloatRows).
    func storeWithBadSample(layout: StoreLayout = .default, _ edit: (inout StoreSample) -> Void) throws -> String {
        let dir = tempDir(self)
        let w = try StoreWriter(directory: dir, name: "bad", spec: smallSpec, samplesPerShard: 5, layout: layout)
        let gen = SynthGenerator(SynthConfig(samples: 12, spec: smallSpec, seed: 1))
        for i in 0..<12 {
            var a = [Float](repeating: 0, count: smallSpec.audioRow), v = [Float](repeating: 0, count: smallSpec.videoRow)
            let m = gen.sample(i, audio: &a, video: &v)
            var s = StoreSample(utteranceId: m.utteranceId, transcript: m.transcript, audio: a, audioLength: m.audioLength,
                                video: v, videoLength: m.videoLength, label: m.label, split: m.split)
            if i == 6 { edit(&s) }
            try w.append(s)
        }
        try w.finish()
        return dir
    }

    /// Checks verify and the loader on a store with one bad sample (global id 6).
    func checkBadSample(_ dir: String, _ reason: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let report = try verifyStore(directory: dir)
        XCTAssertEqual(report.badSamples, 1, file: file, line: line)
        XCTAssertEqual(report.problems.count, 1, file: file, line: line)
        let p = report.problems.first ?? ""
        for part in ["shard-00001.h5", "row 1", "global id 6", "synth-1-6", reason] {
            XCTAssertTrue(p.contains(part), "\(p) lacks \(part)", file: file, line: line)
        }
        let store = try FeatureStore(directory: dir)
        let strict = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 12, shuffle: false))
        let msg = thrownMessage { try strict.fill(strict.makeBatch(worldSize: 1), epoch: 0, positions: 0..<12) }
        XCTAssertTrue(msg.contains("shard-00001.h5") && msg.contains("global id 6") && msg.contains(reason), msg, file: file, line: line)
        XCTAssertTrue(msg.contains("--skip-bad-samples"), msg, file: file, line: line)
        let logged = LogBox()
        let lenient = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 5, shuffle: false, skipBadSamples: true), log: logged.append)
        let it = try lenient.batches(rank: 0, worldSize: 1, untilEpoch: 1)
        var ids: [Int64] = []
        while let b = try it.next() { ids += b.globalIds[0..<b.count] }
        XCTAssertEqual(ids, (0..<12).filter { $0 != 6 }.map { Int64($0) }, file: file, line: line)
        XCTAssertEqual(lenient.skipped, 1, file: file, line: line)
        XCTAssertTrue(logged.lines.contains { $0.contains("global id 6") && $0.contains(reason) }, "\(logged.lines)", file: file, line: line)
    }

    func testNaNAndInfFeatures() throws {
        for layout in [StoreLayout.default, oneRowPerChunk] {
            try checkBadSample(try storeWithBadSample(layout: layout) { $0.audio[5] = .nan }, "audio holds nan at frame 1, dim 1")
            try checkBadSample(try storeWithBadSample(layout: layout) { $0.video[7] = -.infinity }, "video holds -inf at frame 1, dim 2")
            try checkBadSample(try storeWithBadSample(layout: layout) { $0.video[smallSpec.videoRow - 1] = .infinity },
                               "video holds inf at frame 2, dim 4")
        }
    }

    func testEmptyTranscript() throws {
        try checkBadSample(try storeWithBadSample { $0.transcript = "  " }, "empty transcript")
    }

    func testLabelOutOfRange() throws {
        try checkBadSample(try storeWithBadSample { $0.label = 4.5 }, "label 4.5 outside [-3.0, 3.0]")
    }

    func testCorruptChunkIsCaughtByFletcher32AndTheChecksum() throws {
        let dir = try storeWithBadSample { _ in }
        let path = dir + "/shard-00001.h5"
        let (addr, size) = try H5File.open(path).dataset("audio").chunkLocation([1, 0, 0])
        // Small rows pack into 16 KiB chunks (plus the 4-byte Fletcher32 sum).
        XCTAssertEqual(size, 4 * smallSpec.audioRow * ((16 << 10) / (4 * smallSpec.audioRow)) + 4)
        let fh = FileHandle(forUpdatingAtPath: path)!
        fh.seek(toFileOffset: UInt64(addr + 4 * smallSpec.audioRow + 8)); fh.write(Data([0xFF, 0x7F])); fh.closeFile()
        let report = try verifyStore(directory: dir)
        XCTAssertTrue(report.problems.contains { $0.contains(path) && $0.contains("checksum mismatch") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.contains(path) && $0.contains("unreadable") && $0.contains("Fletcher32") }, "\(report.problems)")
        XCTAssertFalse(report.ok)
        let store = try FeatureStore(directory: dir)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 12, shuffle: false))
        let msg = thrownMessage { try loader.fill(loader.makeBatch(worldSize: 1), epoch: 0, positions: 0..<12) }
        XCTAssertTrue(msg.contains(path) && msg.contains("unreadable") && msg.contains("global id 5"), msg)
    }

    /// One row per chunk (the layout of reference-size rows): the loader copies rows out
    /// of a mapping of the file and verifies Fletcher32 itself; a changed byte anywhere in the row, or in
    /// the stored sum, is caught and reported by HDF5's read of that sample.
    func testCorruptChunkIsCaughtWhenRowsAreReadDirectly() throws {
        for (where_, delta) in [("first value", 0), ("last value", 4 * smallSpec.audioRow - 2), ("stored sum", 4 * smallSpec.audioRow + 1)] {
            let dir = try storeWithBadSample(layout: oneRowPerChunk) { _ in }
            let path = dir + "/shard-00001.h5"
            let f = try H5File.open(path)
            let (addr, size) = try f.dataset("audio").chunkLocation([1, 0, 0])
            XCTAssertEqual(size, 4 * smallSpec.audioRow + 4)
            XCTAssertTrue(try H5RowReader(f.dataset("audio", cacheBytes: 0)).readsChunksDirectly)
            try f.close()
            let fh = FileHandle(forUpdatingAtPath: path)!
            fh.seek(toFileOffset: UInt64(addr + delta)); let old = fh.readData(ofLength: 1)[0]
            fh.seek(toFileOffset: UInt64(addr + delta)); fh.write(Data([old ^ 0x10])); fh.closeFile()
            let store = try FeatureStore(directory: dir)
            XCTAssertTrue(try store.openShard(1).audio.readsFromMapping)
            let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 12, shuffle: false))
            let msg = thrownMessage { try loader.fill(loader.makeBatch(worldSize: 1), epoch: 0, positions: 0..<12) }
            XCTAssertTrue(msg.contains(path) && msg.contains("unreadable") && msg.contains("global id 6") && msg.contains("Fletcher32"),
                          "\(where_): \(msg)")
        }
    }

    func testTruncatedShard() throws {
        let dir = try storeWithBadSample { _ in }
        let path = dir + "/shard-00002.h5"
        let fh = FileHandle(forUpdatingAtPath: path)!
        fh.truncateFile(atOffset: 3000); fh.closeFile()
        let report = try verifyStore(directory: dir)
        XCTAssertEqual(report.badShards, 1)
        XCTAssertTrue(report.problems.contains { $0.contains(path) && $0.contains("checksum mismatch") && $0.contains("3000 bytes") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.contains(path) && $0.contains("truncated") }, "\(report.problems)")
        let store = try FeatureStore(directory: dir)
        let msg = thrownMessage { _ = try StoreLoader(store: store, config: LoaderConfig()) }
        XCTAssertTrue(msg.contains(path) && msg.contains("truncated"), msg)
        // Skipping drops the shard's 2 samples and counts them.
        let logged = LogBox()
        let lenient = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 12, skipBadSamples: true), log: logged.append)
        XCTAssertEqual(lenient.skipped, 2)
        let it = try lenient.batches(rank: 0, worldSize: 1, untilEpoch: 1)
        let b = try it.next()!
        XCTAssertEqual(b.count, 10); XCTAssertEqual(b.skipped, 2)
        XCTAssertTrue(b.globalIds[0..<10].allSatisfy { $0 < 10 })
        XCTAssertTrue(logged.lines.contains { $0.contains(path) })
    }

    func testManifestNamingAMissingFile() throws {
        let dir = try storeWithBadSample { _ in }
        try FileManager.default.removeItem(atPath: dir + "/shard-00000.h5")
        let report = try verifyStore(directory: dir)
        XCTAssertTrue(report.problems.contains { $0.contains("shard-00000.h5: missing") }, "\(report.problems)")
        let msg = thrownMessage { _ = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig()) }
        XCTAssertTrue(msg.contains("shard-00000.h5: missing") && msg.contains("5 samples"), msg)
        XCTAssertTrue(thrownMessage { _ = try FeatureStore(directory: dir + "/nope") }.contains("no such store directory"))
    }

    func testMissingDataset() throws {
        let dir = try storeWithBadSample { _ in }
        let path = dir + "/shard-00001.h5"
        let f = try H5File.open(path, writable: true)
        try f.delete("video_length"); try f.close()
        let msg = thrownMessage { _ = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig()) }
        XCTAssertTrue(msg.contains(path) && msg.contains("missing dataset /video_length"), msg)
        let report = try verifyStore(directory: dir)
        XCTAssertTrue(report.problems.contains { $0.contains("missing dataset /video_length") }, "\(report.problems)")
    }

    func testShardsOfDifferentDimensions() throws {
        let dir = try storeWithBadSample { _ in }
        let other = tempDir(self, "other")
        var spec = smallSpec; spec.videoDim = 6
        let m = try makeSynthStore(other, n: 5, perShard: 5, spec: spec)
        // Put the other store's shard in place of shard 0, with a consistent manifest entry.
        try FileManager.default.removeItem(atPath: dir + "/shard-00000.h5")
        try FileManager.default.copyItem(atPath: other + "/shard-00000.h5", toPath: dir + "/shard-00000.h5")
        var man = try Manifest.load(directory: dir)
        man.shards[0] = m.shards[0]
        try man.save(directory: dir)
        let msg = thrownMessage { _ = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig()) }
        XCTAssertTrue(msg.contains("shard-00000.h5") && msg.contains("/video has shape [5, 3, 6]") && msg.contains("[5, 3, 5]"), msg)
        XCTAssertTrue(try verifyStore(directory: dir).problems.contains { $0.contains("different dimensions") })
    }

    func testBadManifest() throws {
        let dir = tempDir(self)
        try "{\"format\": \"skesl-feature-store\", \"schema_version\": 1}".write(toFile: dir + "/manifest.json", atomically: true, encoding: .utf8)
        XCTAssertTrue(thrownMessage { _ = try FeatureStore(directory: dir) }.contains("missing key"))
        let dir2 = try storeWithBadSample { _ in }
        var m = try Manifest.load(directory: dir2); m.schemaVersion = 99; try m.save(directory: dir2)
        XCTAssertTrue(thrownMessage { _ = try FeatureStore(directory: dir2) }.contains("schema version 99"))
    }
}

final class LogBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }
    var append: @Sendable (String) -> Void { { [self] s in lock.lock(); _lines.append(s); lock.unlock() } }
}
