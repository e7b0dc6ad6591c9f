import Foundation
import XCTest
import SKESLHDF5
@testable import SKESLStore

/// Resharding, merging and the importers.
final class ToolTests: XCTestCase {
    /// All samples of a store keyed by utterance id: (transcript, features sum, label).
    func contents(_ dir: String) throws -> [String: [Float]] {
        let store = try FeatureStore(directory: dir)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: store.count, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<store.count)
        var out: [String: [Float]] = [:]
        for i in 0..<b.count {
            out[b.utteranceIds[i]] = Array(b.audioRow(i)) + Array(b.videoRow(i)) +
                [Float(b.audioLengths[i]), Float(b.videoLengths[i]), b.labels?[i] ?? 0, Float(b.splits?[i] ?? 9), Float(b.transcripts[i].hashValue % 1000)]
        }
        return out
    }

    func testReshardSplitsAndMergesWithoutChangingSamples() throws {
        let a = tempDir(self, "a"), b = tempDir(self, "b")
        try makeSynthStore(a, n: 23, perShard: 23, seed: 1)
        try makeSynthStore(b, n: 9, perShard: 4, seed: 2)
        let five = tempDir(self, "five")
        let r = try reshardStores(inputs: [a], output: five, shards: 5)
        XCTAssertEqual(r.manifest.shards.map(\.samples), [5, 5, 5, 4, 4])
        XCTAssertEqual(try contents(five), try contents(a))
        XCTAssertTrue(try verifyStore(directory: five).ok)
        let merged = tempDir(self, "merged")
        let m = try reshardStores(inputs: [five, b], output: merged, shards: 3).manifest
        XCTAssertEqual(m.shards.map(\.samples), [11, 11, 10])
        XCTAssertEqual(m.splits?.values.reduce(0, +), 32)
        XCTAssertEqual(try contents(merged), try contents(a).merging(try contents(b)) { x, _ in x })
        // Shapes must agree to merge.
        let c = tempDir(self, "c")
        var spec = smallSpec; spec.audioDim = 3
        try makeSynthStore(c, n: 3, perShard: 3, spec: spec)
        XCTAssertTrue(thrownMessage { try reshardStores(inputs: [a, c], output: tempDir(self, "x"), shards: 1) }.contains("differ"))
        XCTAssertTrue(thrownMessage { try reshardStores(inputs: [a], output: a, shards: 2) }.contains("also an input"))
    }

    func testReshardSkipsBadSamplesWhenAsked() throws {
        let a = tempDir(self, "a")
        let w = try StoreWriter(directory: a, name: "t", spec: smallSpec, samplesPerShard: 4)
        for i in 0..<6 {
            try w.append(StoreSample(utteranceId: "u\(i)", transcript: i == 2 ? "" : "hello there", audio: [Float](repeating: 1, count: smallSpec.audioRow),
                                     audioLength: 6, video: [Float](repeating: 2, count: smallSpec.videoRow), videoLength: 3, label: 0.5, split: .test))
        }
        try w.finish()
        XCTAssertTrue(thrownMessage { try reshardStores(inputs: [a], output: tempDir(self, "o1"), shards: 2) }.contains("empty transcript"))
        let out = tempDir(self, "o2")
        let r = try reshardStores(inputs: [a], output: out, shards: 2, skipBadSamples: true)
        XCTAssertEqual(r.skipped, 1)
        XCTAssertEqual(r.manifest.totalSamples, 5)
        XCTAssertEqual(Set(try contents(out).keys), ["u0", "u1", "u3", "u4", "u5"])
    }

    /// .npy writer for the test (float32, 2-D).
    func writeNpy(_ path: String, _ rows: [[Float]]) throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows.count), \(rows[0].count)), }"
        while (10 + header.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)])
        d.append(header.data(using: .ascii)!)
        for r in rows { for v in r { withUnsafeBytes(of: v) { d.append(contentsOf: $0) } } }
        try d.write(to: URL(fileURLWithPath: path))
    }

    func testImportPerUtteranceFilesPadsAndTruncates() throws {
        let src = tempDir(self, "src")
        let openfaceHeader = "frame, face_id, timestamp, confidence, success, AU01_r, AU02_r, pose_Rx"
        for (k, id) in ["b", "a"].enumerated() {
            try "  hello world \(id)\n".write(toFile: "\(src)/\(id).txt", atomically: true, encoding: .utf8)
            let audioFrames = k == 0 ? 5 : 2
            try writeNpy("\(src)/\(id).npy", (0..<audioFrames).map { f in [Float(f), Float(k), 0.5] })
            let rows = (0..<(k == 0 ? 2 : 6)).map { f in "\(f + 1), 0, \(Double(f) * 0.033), 0.98, 1, \(f), \(k), 0.25" }
            try ([openfaceHeader] + rows).joined(separator: "\n").write(toFile: "\(src)/\(id).openface.csv", atomically: true, encoding: .utf8)
        }
        try "id,label,split\na,-1.5,train\nb,2.25,test\n".write(toFile: "\(src)/labels.csv", atomically: true, encoding: .utf8)
        var opt = ImportOptions(); opt.audioFrames = 4; opt.videoFrames = 3
        let out = tempDir(self, "out")
        let r = try importUtteranceFiles(directory: src, output: out, options: opt)
        XCTAssertEqual(r.manifest.features, FeatureSpec(audioFrames: 4, audioDim: 3, videoFrames: 3, videoDim: 3, tokens: nil, labeled: true))
        let store = try FeatureStore(directory: out)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 2, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<2)
        XCTAssertEqual(b.utteranceIds[0..<2], ["a", "b"])
        XCTAssertEqual(b.transcripts[0], "hello world a")
        // a: 2 audio frames padded to 4; 6 video frames truncated to 3.
        XCTAssertEqual(Array(b.audioRow(0)), [0, 1, 0.5, 1, 1, 0.5, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(b.audioLengths[0], 2); XCTAssertEqual(b.videoLengths[0], 3)
        XCTAssertEqual(Array(b.videoRow(0)), [0, 1, 0.25, 1, 1, 0.25, 2, 1, 0.25])
        // b: 5 audio frames truncated to 4; 2 video frames padded.
        XCTAssertEqual(b.audioLengths[1], 4); XCTAssertEqual(b.videoLengths[1], 2)
        XCTAssertEqual(Array(b.videoRow(1)), [0, 0, 0.25, 1, 0, 0.25, 0, 0, 0])
        XCTAssertEqual(b.labels![0], -1.5); XCTAssertEqual(b.splits![1], Split.test.rawValue)
        // A NaN in a file is refused with the file and utterance, or replaced when asked.
        try writeNpy("\(src)/a.npy", [[1, .nan, 2]])
        let msg = thrownMessage { _ = try importUtteranceFiles(directory: src, output: tempDir(self, "o2"), options: opt) }
        XCTAssertTrue(msg.contains("a.npy") && msg.contains("\"a\"") && msg.contains("--replace-nonfinite"), msg)
        opt.replaceNonFinite = true
        XCTAssertEqual(try importUtteranceFiles(directory: src, output: tempDir(self, "o3"), options: opt).replacedValues, 1)
        try FileManager.default.removeItem(atPath: "\(src)/b.openface.csv")
        XCTAssertTrue(thrownMessage { _ = try importUtteranceFiles(directory: src, output: tempDir(self, "o4"), options: opt) }.contains("b.openface.csv"))
    }

    /// Writes a computational sequence: /<name>/data/<vid>/{features, intervals}.
    func writeCSD(_ path: String, _ name: String, _ videos: [String: (features: [[Float]], intervals: [(Double, Double)])]) throws {
        let f = try H5File.create(path)
        for (vid, seq) in videos {
            try f.write("/\(name)/data/\(vid)/features", seq.features.flatMap { $0 }, shape: [seq.features.count, seq.features[0].count])
            try f.write("/\(name)/data/\(vid)/intervals", seq.intervals.flatMap { [$0.0, $0.1] }, shape: [seq.intervals.count, 2])
        }
        try f.close()
    }

    func testImportComputationalSequencesAlignsToLabelSegments() throws {
        let src = tempDir(self, "csd")
        // Video v1 with two labeled segments [0, 2) and [2, 4); v2 with one; v3 not in any split.
        try writeCSD("\(src)/labels.csd", "Opinion Segment Labels", [
            "v1": ([[1.5], [-2.0]], [(0, 2), (2, 4)]), "v2": ([[0.4]], [(0, 1)]), "v3": ([[0]], [(0, 1)])])
        try writeCSD("\(src)/audio.csd", "COVAREP", [
            "v1": ((0..<8).map { [Float($0), 1] }, (0..<8).map { (Double($0) * 0.5, Double($0) * 0.5 + 0.5) }),
            "v2": ([[9, 9]], [(0, 1)]), "v3": ([[0, 0]], [(0, 1)])])
        try writeCSD("\(src)/video.csd", "OpenFace_2", [
            "v1": ((0..<4).map { [Float($0)] }, (0..<4).map { (Double($0), Double($0) + 1) }),
            "v2": ([[7]], [(0, 1)]), "v3": ([[0]], [(0, 1)])])
        // Words (the SDK stores them as byte strings; HDF5 converts either kind on read).
        let wf = try H5File.create("\(src)/words.csd")
        for (vid, words, iv) in [("v1", ["i", "sp", "love", "it", "so", "bad"], [(0.0, 0.5), (0.5, 1), (1, 1.5), (1.5, 2), (2, 3), (3, 4)]),
                                 ("v2", ["okay"], [(0.0, 1)]), ("v3", ["x"], [(0.0, 1)])] {
            try wf.write("/words/data/\(vid)/intervals", iv.flatMap { [$0.0, $0.1] }, shape: [iv.count, 2])
            try wf.writeStrings("/words/data/\(vid)/features", words)
        }
        try wf.close()
        try "v1\n".write(toFile: "\(src)/train.txt", atomically: true, encoding: .utf8)
        try "# test videos\nv2\n".write(toFile: "\(src)/test.txt", atomically: true, encoding: .utf8)
        var opt = ImportOptions(); opt.audioFrames = 4; opt.videoFrames = 2
        let out = tempDir(self, "out")
        let r = try importCSD(labels: "\(src)/labels.csd", words: "\(src)/words.csd", audio: "\(src)/audio.csd", video: "\(src)/video.csd",
                              splitLists: [.train: "\(src)/train.txt", .test: "\(src)/test.txt"], output: out, options: opt)
        XCTAssertEqual(r.manifest.totalSamples, 3)
        XCTAssertEqual(r.manifest.splits, ["train": 2, "valid": 0, "test": 1])
        let store = try FeatureStore(directory: out)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 3, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<3)
        XCTAssertEqual(b.utteranceIds[0..<3], ["v1_0", "v1_1", "v2_0"])
        XCTAssertEqual(b.transcripts[0..<3], ["i love it", "so bad", "okay"])
        XCTAssertEqual(Array(b.labels![0..<3]), [1.5, -2.0, 0.4])
        XCTAssertEqual(Array(b.audioRow(1)), [4, 1, 5, 1, 6, 1, 7, 1])      // frames with midpoints in [2, 4)
        XCTAssertEqual(Array(b.videoRow(0)), [0, 1]); XCTAssertEqual(b.videoLengths[0], 2)
        XCTAssertEqual(Array(b.videoRow(2)), [7, 0]); XCTAssertEqual(b.videoLengths[2], 1)
        XCTAssertTrue(try verifyStore(directory: out).ok)
    }

    func testImportMMSAPickleThroughThePythonHelper() throws {
        guard let py = python() else { throw XCTSkip("no Python venv with numpy and h5py (set SKESL_VENV_PYTHON or link .venv)") }
        let dir = tempDir(self, "pk")
        let make = """
        import pickle, numpy as np, sys
        rng = np.random.default_rng(0)
        def part(n, off):
            return {"raw_text": np.array([f"utterance {off + i} was good" for i in range(n)], dtype=object),
                    "audio": rng.normal(size=(n, 7, 3)).astype(np.float32),
                    "vision": rng.normal(size=(n, 4, 5)).astype(np.float32),
                    "audio_lengths": [7, 3, 5][:n], "vision_lengths": [4] * n,
                    "regression_labels": np.linspace(-3, 3, n).astype(np.float32),
                    "id": [f"clip{off + i}" for i in range(n)]}
        data = {"train": part(3, 0), "valid": part(1, 3), "test": part(2, 4)}
        pickle.dump(data, open(sys.argv[1], "wb"))
        np.save(sys.argv[1] + ".audio.npy", data["train"]["audio"][1])
        """
        try make.write(toFile: dir + "/make.py", atomically: true, encoding: .utf8)
        var (status, out) = try runProcess(py, [dir + "/make.py", dir + "/data.pkl"])
        XCTAssertEqual(status, 0, out)
        let storeDir = dir + "/store"
        (status, out) = try runProcess(py, [repoRoot + "/scripts/import_mmsa_pickle.py", dir + "/data.pkl", storeDir,
                                            "--audio-frames", "5", "--video-frames", "4", "--samples-per-shard", "4"])
        XCTAssertEqual(status, 0, out)
        let report = try verifyStore(directory: storeDir)
        XCTAssertTrue(report.ok, "\(report.problems)")
        let store = try FeatureStore(directory: storeDir)
        XCTAssertEqual(store.manifest.shards.map(\.samples), [4, 2])
        XCTAssertEqual(store.manifest.splits, ["train": 3, "valid": 1, "test": 2])
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 6, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<6)
        XCTAssertEqual(b.utteranceIds[0..<6], ["clip0", "clip1", "clip2", "clip3", "clip4", "clip5"])
        XCTAssertEqual(b.transcripts[1], "utterance 1 was good")
        XCTAssertEqual(Array(b.audioLengths[0..<3]), [5, 3, 5])
        XCTAssertEqual(Array(b.labels![0..<3]), [-3, 0, 3])
        XCTAssertEqual(Array(b.splits![0..<6]), [0, 0, 0, 1, 2, 2])
        // Sample 1's audio: its first 3 frames kept (true length 3), the rest zero.
        let ref = try readNpy(dir + "/data.pkl.audio.npy")
        XCTAssertEqual(Array(b.audioRow(1)[0..<9]), Array(ref.values[0..<9]))
        XCTAssertTrue(b.audioRow(1)[9...].allSatisfy { $0 == 0 })
        // One row per chunk: the helper records chunk addresses like skesl's writer, and
        // rows read from the mapping equal those read through HDF5.
        let mappedDir = dir + "/store-mapped"
        (status, out) = try runProcess(py, [repoRoot + "/scripts/import_mmsa_pickle.py", dir + "/data.pkl", mappedDir,
                                            "--audio-frames", "5", "--video-frames", "4", "--samples-per-shard", "4", "--chunk-bytes", "1"])
        XCTAssertEqual(status, 0, out)
        let mappedStore = try FeatureStore(directory: mappedDir)
        XCTAssertTrue(try mappedStore.openShard(0).audio.readsFromMapping && mappedStore.openShard(1).video.readsFromMapping)
        let ml = try StoreLoader(store: mappedStore, config: LoaderConfig(globalBatchSize: 6, shuffle: false))
        let mb = ml.makeBatch(worldSize: 1)
        try ml.fill(mb, epoch: 0, positions: 0..<6)
        XCTAssertEqual(Array(mb.audio[0..<(6 * mappedStore.spec.audioRow)]), Array(b.audio[0..<(6 * store.spec.audioRow)]))
        XCTAssertEqual(Array(mb.video[0..<(6 * mappedStore.spec.videoRow)]), Array(b.video[0..<(6 * store.spec.videoRow)]))
    }
}
