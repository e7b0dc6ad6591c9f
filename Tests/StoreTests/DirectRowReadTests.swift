// Feature rows read straight from the file (one row per chunk, HDF5+Rows.swift and the
// store's mapped reader) against HDF5's own reads, with their Fletcher32 checksums.
import Foundation
import XCTest
import SKESLHDF5
@testable import SKESLStore

final class DirectRowReadTests: XCTestCase {
    /// Rows stored one per chunk are read directly from the file; every value equals
    /// HDF5's own read, with and without Fletcher32, and each checksum HDF5 wrote matches.
    func testDirectChunkReadsEqualHDF5Reads() throws {
        let spec = FeatureSpec(audioFrames: 20, audioDim: 9, videoFrames: 7, videoDim: 13, tokens: nil, labeled: false)
        for layout in [oneRowPerChunk, StoreLayout(featureChunkBytes: 1, fletcher32: false)] {
            let dir = tempDir(self)
            try makeSynthStore(dir, n: 23, perShard: 10, spec: spec, layout: layout)
            for shard in ["shard-00000.h5", "shard-00002.h5"] {
                let f = try H5File.open(dir + "/" + shard)
                for (name, width) in [("audio", spec.audioRow), ("video", spec.videoRow)] {
                    let fast = try H5RowReader(f.dataset(name, cacheBytes: 0)), plain = try H5RowReader(f.dataset(name, cacheBytes: 0))
                    XCTAssertTrue(fast.readsChunksDirectly)
                    let n = fast.rows
                    var a = [Float](repeating: -1, count: n * width), b = [Float](repeating: -2, count: n * width)
                    // Shuffled single rows, then one run of all rows.
                    for r in (0..<n).reversed() {
                        let finite = try a.withUnsafeMutableBufferPointer { try fast.readFloatRows(r, 1, into: $0.baseAddress! + r * width) }
                        XCTAssertEqual(finite, true)
                    }
                    try b.withUnsafeMutableBufferPointer { try plain.read(0, n, into: $0.baseAddress!) }
                    XCTAssertEqual(a, b, "\(shard) \(name) \(layout.summary)")
                    var c = [Float](repeating: 0, count: n * width)
                    _ = try c.withUnsafeMutableBufferPointer { try fast.readFloatRows(0, n, into: $0.baseAddress!) }
                    XCTAssertEqual(c, b)
                    XCTAssertThrowsError(try c.withUnsafeMutableBufferPointer { try fast.readFloatRows(n - 1, 2, into: $0.baseAddress!) })
                    // In place, with room after the rows: what follows them is left as it was.
                    var d = [Float](repeating: 7.5, count: (n + 1) * width)
                    for r in [n - 1, 0] {
                        _ = try d.withUnsafeMutableBufferPointer {
                            try fast.readFloatRows(r, 1, into: $0.baseAddress! + r * width, spareBytesAfter: 4 * (n - r) * width)
                        }
                        XCTAssertEqual(Array(d[(r * width)..<((r + 1) * width)]), Array(b[(r * width)..<((r + 1) * width)]))
                    }
                    XCTAssertEqual(Array(d[(n * width)...]), [Float](repeating: 7.5, count: width))
                    XCTAssertEqual(Array(d[width..<(2 * width)]), [Float](repeating: 7.5, count: width))
                }
                try f.close()
            }
        }
        // Several rows to a chunk: HDF5's read, and the same values.
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 5, perShard: 5, spec: spec)
        let f = try H5File.open(dir + "/shard-00000.h5")
        XCTAssertFalse(try H5RowReader(f.dataset("audio", cacheBytes: 0)).readsChunksDirectly)
    }
}

/// Shards record where each feature row's chunk lies; the loader copies rows out of a
/// mapping of the file and verifies them in the same pass.
final class ChunkIndexTests: XCTestCase {
    let spec = FeatureSpec(audioFrames: 20, audioDim: 9, videoFrames: 7, videoDim: 13, tokens: nil, labeled: true)

    func testWriterRecordsEveryRowsChunkAddress() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 23, perShard: 10, spec: spec, layout: oneRowPerChunk)
        let f = try H5File.open(dir + "/shard-00001.h5")
        for name in ["audio", "video"] {
            let index = try f.read(ShardSchema.chunkIndex(name), as: UInt64.self).values
            XCTAssertEqual(index.count, 10)
            for r in 0..<10 { XCTAssertEqual(index[r], UInt64(try f.dataset(name).chunkLocation([r, 0, 0]).address)) }
        }
        // Several rows to a chunk, or compressed chunks: no index (rows are read through HDF5).
        for layout in [StoreLayout.default, StoreLayout(featureChunkBytes: 1, deflate: 1)] {
            let d = tempDir(self)
            try makeSynthStore(d, n: 5, perShard: 5, spec: spec, layout: layout)
            XCTAssertFalse(try H5File.open(d + "/shard-00000.h5").exists(ShardSchema.chunkIndex("audio")), layout.summary)
        }
    }

    func testMappedReadsEqualHDF5ReadsAndRefuseAWrongIndex() throws {
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 23, perShard: 10, spec: spec, layout: oneRowPerChunk)
        let store = try FeatureStore(directory: dir)
        let shard = try store.openShard(1)
        XCTAssertTrue(shard.audio.readsFromMapping && shard.video.readsFromMapping)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 23, seed: 5, shuffle: true))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 2, positions: 0..<23)
        for j in 0..<23 {
            let (s, row) = store.locate(b.globalIds[j])
            let f = try H5File.open(dir + "/" + store.manifest.shards[s].file)
            for (name, buf, width) in [("audio", b.audio, spec.audioRow), ("video", b.video, spec.videoRow)] {
                let r = try H5RowReader(f.dataset(name))
                var want = [Float](repeating: 0, count: width)
                try want.withUnsafeMutableBufferPointer { try r.read(row, 1, into: $0.baseAddress!) }
                XCTAssertEqual(Array(buf[(j * width)..<((j + 1) * width)]), want, "\(name) of sample \(b.globalIds[j])")
            }
        }
        // An index that does not match the file is refused (rows are then read chunk by chunk).
        let f = try H5File.open(dir + "/shard-00000.h5")
        let good = try f.read(ShardSchema.chunkIndex("audio"), as: UInt64.self).values
        let mapping = try FileMapping(path: dir + "/shard-00000.h5")
        let r = try H5RowReader(f.dataset("audio", cacheBytes: 0))
        var swapped = good; swapped.swapAt(0, 9)
        XCTAssertFalse(r.useChunkAddresses(swapped, mapping: mapping))
        XCTAssertFalse(r.useChunkAddresses(good.map { $0 + UInt64(mapping.size) }, mapping: mapping))
        XCTAssertFalse(r.useChunkAddresses(Array(good.dropLast()), mapping: mapping))
        XCTAssertTrue(r.useChunkAddresses(good, mapping: mapping))
    }

    /// A row is verified on its first read from a mapping; later reads trust those bytes
    /// unless verifyEveryRead is set. A chunk changed under an open shard is caught by
    /// the next read only with verifyEveryRead, and by every reader that opens it later.
    func testVerifyOnFirstReadOrOnEveryRead() throws {
        for every in [false, true] {
            let dir = tempDir(self)
            try makeSynthStore(dir, n: 10, perShard: 10, spec: spec, layout: oneRowPerChunk)
            let path = dir + "/shard-00000.h5"
            let store = try FeatureStore(directory: dir)
            var cfg = LoaderConfig(globalBatchSize: 10, shuffle: false)
            cfg.verifyEveryRead = every
            let loader = try StoreLoader(store: store, config: cfg)
            let b = loader.makeBatch(worldSize: 1)
            try loader.fill(b, epoch: 0, positions: 0..<10)
            let first = Array(b.audio[0..<(10 * spec.audioRow)])
            // Change one byte of row 3's audio chunk in place (the mapping sees it).
            let addr = try H5File.open(path).dataset("audio").chunkLocation([3, 0, 0]).address
            let fh = FileHandle(forUpdatingAtPath: path)!
            fh.seek(toFileOffset: UInt64(addr + 40)); let old = fh.readData(ofLength: 1)[0]
            fh.seek(toFileOffset: UInt64(addr + 40)); fh.write(Data([old ^ 0x01])); fh.closeFile()
            if every {
                let msg = thrownMessage { try loader.fill(b, epoch: 1, positions: 0..<10) }
                XCTAssertTrue(msg.contains("global id 3") && msg.contains("Fletcher32"), msg)
            } else {
                try loader.fill(b, epoch: 1, positions: 0..<10)
                XCTAssertNotEqual(Array(b.audio[0..<(10 * spec.audioRow)]), first, "the changed byte is read as is")
                let fresh = try StoreLoader(store: store, config: cfg)
                let msg = thrownMessage { try fresh.fill(fresh.makeBatch(worldSize: 1), epoch: 0, positions: 0..<10) }
                XCTAssertTrue(msg.contains("global id 3") && msg.contains("Fletcher32"), msg)
            }
        }
    }
}
