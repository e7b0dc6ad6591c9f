import Foundation
import XCTest
import SKESLHDF5
@testable import SKESLStore

/// The store's row table (row-table.bin): written with the store, rebuilt by verify,
/// read by the loader with the same results as the HDF5 path; damage is reported with
/// the command that rebuilds it; stores without one (or with a stale one) still load.
final class RowTableTests: XCTestCase {
    let tokenSpec = FeatureSpec(audioFrames: 6, audioDim: 4, videoFrames: 3, videoDim: 5, tokens: 7, labeled: true)

    /// A labeled store with token ids, `n` samples in shards of `perShard`.
    func tokenStore(n: Int = 23, perShard: Int = 5, layout: StoreLayout = .default) throws -> String {
        let dir = tempDir(self)
        let w = try StoreWriter(directory: dir, name: "tok", spec: tokenSpec, samplesPerShard: perShard, layout: layout)
        let gen = SynthGenerator(SynthConfig(samples: n, spec: tokenSpec, seed: 4))
        for i in 0..<n {
            var a = [Float](repeating: 0, count: tokenSpec.audioRow), v = [Float](repeating: 0, count: tokenSpec.videoRow)
            let m = gen.sample(i, audio: &a, video: &v)
            let t = (0..<7).map { Int32(i * 10 + $0) }
            try w.append(StoreSample(utteranceId: m.utteranceId + "-é", transcript: m.transcript, tokens: t, tokenLength: 1 + i % 7,
                                     audio: a, audioLength: m.audioLength, video: v, videoLength: m.videoLength, label: m.label, split: m.split))
        }
        try w.finish()
        return dir
    }

    /// Everything a loader hands over for one shuffled epoch, batch by batch.
    func epoch(_ dir: String, table: Bool, split: Split? = nil, text: Bool = true, residentBytes: Int? = nil) throws -> [String] {
        var cfg = LoaderConfig(globalBatchSize: 4, seed: 9, split: split, maxOpenShards: 2)
        cfg.useRowTable = table; cfg.readText = text
        if let r = residentBytes { cfg.residentShardBytes = r }
        let loader = try StoreLoader(store: FeatureStore(directory: dir), config: cfg, log: { _ in })
        XCTAssertEqual(loader.readsRowTable, table)
        defer { if residentBytes != nil { XCTAssertGreaterThan(loader.residentReleases, 0) } }
        let it = try loader.batches(rank: 0, worldSize: 1, untilEpoch: 1)
        var out: [String] = []
        while let b = try it.next() {
            for j in 0..<b.count {
                let s = b.spec
                out.append("\(b.globalIds[j]) \(text ? b.utteranceIds[j] + "|" + b.transcripts[j] : "") \(Array(b.audioRow(j))) \(Array(b.videoRow(j)))"
                           + " \(b.audioLengths[j]) \(b.videoLengths[j]) \(b.labels![j]) \(b.splits![j])"
                           + " \(Array(b.tokens![(j * s.tokens!)..<((j + 1) * s.tokens!)])) \(b.tokenLengths![j])")
            }
        }
        return out
    }

    func testTableIsWrittenWithTheStoreReadsLikeHDF5AndRebuildsToTheSameBytes() throws {
        for layout in [StoreLayout.default, StoreLayout(featureChunkBytes: 1)] {
            let dir = try tokenStore(layout: layout)
            let path = dir + "/" + RowTableFormat.fileName
            let written = try XCTUnwrap(FileManager.default.contents(atPath: path))
            // 64-byte header, 32 bytes per shard and per row, text entries, block CRCs.
            XCTAssertGreaterThan(written.count, 64 + 32 * 5 + 32 * 23 + 4)
            let viaTable = try epoch(dir, table: true)
            XCTAssertEqual(viaTable.count, 23)
            XCTAssertEqual(viaTable, try epoch(dir, table: false))
            XCTAssertEqual(try epoch(dir, table: true, split: .train), try epoch(dir, table: false, split: .train))
            XCTAssertEqual(try epoch(dir, table: true, text: false), try epoch(dir, table: false, text: false))
            // Releasing the mapped shard pages (here after every few rows) changes nothing read.
            XCTAssertEqual(try epoch(dir, table: true, residentBytes: 200), viaTable)
            // verify checks it byte for byte; --rebuild-row-table writes the same bytes.
            XCTAssertEqual(try verifyStore(directory: dir).rowTable, "matches the shards")
            try FileManager.default.removeItem(atPath: path)
            let absent = try verifyStore(directory: dir)
            XCTAssertTrue(absent.ok && absent.rowTable.hasPrefix("absent"), absent.rowTable)
            let rebuilt = try verifyStore(directory: dir, rebuildRowTable: true)
            XCTAssertTrue(rebuilt.ok && rebuilt.rowTable.hasPrefix("rebuilt"), rebuilt.rowTable)
            XCTAssertEqual(FileManager.default.contents(atPath: path), written)
        }
    }

    func testCompressedStoreGetsNoTableAndLoadsThroughHDF5() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 12, perShard: 5, layout: StoreLayout(deflate: 1))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + RowTableFormat.fileName))
        let loader = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 12))
        XCTAssertFalse(loader.readsRowTable)
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<12)
        XCTAssertEqual(b.count, 12)
        XCTAssertTrue(try verifyStore(directory: dir, rebuildRowTable: true).rowTable.hasPrefix("not built"))
    }

    /// Flips one byte at `offset` of the table.
    func flip(_ path: String, at offset: Int) {
        let fh = FileHandle(forUpdatingAtPath: path)!
        fh.seek(toFileOffset: UInt64(offset)); let old = fh.readData(ofLength: 1)[0]
        fh.seek(toFileOffset: UInt64(offset)); fh.write(Data([old ^ 0x01])); fh.closeFile()
    }

    func testDamagedTableIsReportedWithTheCommandThatRebuildsIt() throws {
        let dir = try tokenStore()
        let path = dir + "/" + RowTableFormat.fileName
        let good = try XCTUnwrap(FileManager.default.contents(atPath: path))
        let rowsStart = 64 + 32 * 5
        let textStart = rowsStart + 32 * 23
        // (where, what the message says, found at open or on read)
        for (offset, says, atOpen) in [(20, "header fails its CRC-32", true), (64 + 3, "shard section fails its CRC-32", true),
                                        (rowsStart + 32 * 17 + 24, "rows 0..<23 (global sample ids) fail their CRC-32", false),
                                        (textStart + 20, "text entry of global sample id", false)] {
            try good.write(to: URL(fileURLWithPath: path))
            flip(path, at: offset)
            let store = try FeatureStore(directory: dir)
            let msg = thrownMessage {
                let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 23, shuffle: false))
                XCTAssertFalse(atOpen, "opened a table damaged at \(offset)")
                try loader.fill(loader.makeBatch(worldSize: 1), epoch: 0, positions: 0..<23)
            }
            for part in [path, says, "skesl store verify --rebuild-row-table \(dir)"] {
                XCTAssertTrue(msg.contains(part), "offset \(offset): \(msg) lacks \(part)")
            }
            let report = try verifyStore(directory: dir)
            XCTAssertFalse(report.ok)
            XCTAssertTrue(report.problems.contains { $0.contains(path) }, "\(report.problems)")
            XCTAssertTrue(try verifyStore(directory: dir, rebuildRowTable: true).ok)
            XCTAssertEqual(FileManager.default.contents(atPath: path), good)
        }
        // A truncated table is refused at open.
        try good.prefix(good.count - 3).write(to: URL(fileURLWithPath: path))
        let msg = thrownMessage { _ = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig()) }
        XCTAssertTrue(msg.contains(path) && msg.contains("another size"), msg)
    }

    /// Many more shards than stay open: each sample once per epoch, by one rank, all
    /// through the table (every shard mapped once), the same ids as the HDF5 path.
    func testEverySampleOnceWithManyShards() throws {
        let dir = tempDir(self)
        let n = 301
        try makeSynthStore(dir, n: n, perShard: 2, layout: StoreLayout(featureChunkBytes: 1))
        let store = try FeatureStore(directory: dir)
        XCTAssertEqual(store.shardCount, 151)
        for table in [true, false] {
            var cfg = LoaderConfig(globalBatchSize: 16, microBatches: 2, seed: 5, maxOpenShards: 2)
            cfg.useRowTable = table
            let loader = try StoreLoader(store: store, config: cfg, log: { _ in })
            XCTAssertEqual(loader.readsRowTable, table)
            for ep in 0..<2 {
                var seen: [Int64] = []
                for rank in 0..<3 {
                    let it = try loader.batches(rank: rank, worldSize: 3, from: LoaderCursor(epoch: ep, position: 0), untilEpoch: ep + 1)
                    var step = 0, k = 0
                    while let b = try it.next() {
                        XCTAssertEqual(Array(b.globalIds[0..<b.count]), loader.samples(forStep: step, epoch: ep, rank: rank, worldSize: 3, micro: k))
                        seen += b.globalIds[0..<b.count]
                        k += 1; if k == 2 { k = 0; step += 1 }
                    }
                }
                XCTAssertEqual(seen.sorted(), (0..<Int64(n)).map { $0 }, "epoch \(ep), table \(table)")
            }
            if table { XCTAssertEqual(loader.mappedShards, 151) }
        }
    }

    func testStoreWithoutTableOrWithAStaleOneLoadsThroughHDF5AndSaysHow() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 12, perShard: 2)
        let path = dir + "/" + RowTableFormat.fileName
        let saved = try XCTUnwrap(FileManager.default.contents(atPath: path))
        try FileManager.default.removeItem(atPath: path)
        let logged = LogBox()
        let loader = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 12, maxOpenShards: 2), log: logged.append)
        XCTAssertFalse(loader.readsRowTable)
        XCTAssertTrue(logged.lines.contains { $0.contains("no row table") && $0.contains("skesl store verify --rebuild-row-table \(dir)") }, "\(logged.lines)")
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<12)
        XCTAssertEqual(b.count, 12)
        // A shard written after the table: the table may not describe it.
        try saved.write(to: URL(fileURLWithPath: path))
        let later = Date().addingTimeInterval(5)
        try FileManager.default.setAttributes([.modificationDate: later], ofItemAtPath: dir + "/shard-00003.h5")
        let stale = LogBox()
        let l2 = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 12), log: stale.append)
        XCTAssertFalse(l2.readsRowTable)
        XCTAssertTrue(stale.lines.contains { $0.contains("shard-00003.h5") && $0.contains("changed after it was written") && $0.contains("--rebuild-row-table") }, "\(stale.lines)")
        // A manifest that lists other shards than the table was written for.
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-100)], ofItemAtPath: dir + "/shard-00003.h5")
        XCTAssertTrue(try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig()).readsRowTable)
        var m = try Manifest.load(directory: dir)
        m.shards[0].crc32 = "00000000"
        try m.save(directory: dir)
        let other = LogBox()
        XCTAssertFalse(try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(), log: other.append).readsRowTable)
        XCTAssertTrue(other.lines.contains { $0.contains("other shard files") }, "\(other.lines)")
    }

    /// A feature chunk damaged on disk under a sound table: Fletcher32 catches it on read
    /// through the table, and HDF5's read names the sample.
    func testCorruptChunkUnderTheTableIsCaughtByFletcher32() throws {
        for layout in [StoreLayout.default, StoreLayout(featureChunkBytes: 1)] {
            let dir = try tokenStore(layout: layout)
            let shard = dir + "/shard-00001.h5"
            let (addr, _) = try H5File.open(shard).dataset("video").chunkLocation([1, 0, 0])
            let rowOffset = layout.featureChunkBytes == 1 ? 0 : 4 * tokenSpec.videoRow
            flip(shard, at: addr + rowOffset + 6)
            // The shard keeps its old time, as after a disk error: the table stays in use.
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-100)], ofItemAtPath: shard)
            let loader = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 23, shuffle: false))
            XCTAssertTrue(loader.readsRowTable)
            let msg = thrownMessage { try loader.fill(loader.makeBatch(worldSize: 1), epoch: 0, positions: 0..<23) }
            // Small rows share a chunk: the shard's first sample read (global id 5) fails.
            let id = layout.featureChunkBytes == 1 ? 6 : 5
            XCTAssertTrue(msg.contains(shard) && msg.contains("global id \(id)") && msg.contains("Fletcher32"), msg)
        }
    }
}
