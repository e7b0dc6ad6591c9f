import Foundation
import XCTest
import SKESLHDF5
@testable import SKESLStore

final class FormatTests: XCTestCase {
    func testCRC32MatchesTheStandardCheckValue() {
        XCTAssertEqual(CRC32.of(Array("123456789".utf8)), 0xCBF4_3926)
        // Split feeding gives the same value as one pass (slicing-by-8 and the tail loop agree).
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var c = CRC32()
        bytes[0..<13].withUnsafeBytes { c.update($0) }
        bytes[13...].withUnsafeBytes { c.update($0) }
        XCTAssertEqual(c.value, CRC32.of(bytes))
    }

    func testWrittenStoreReadsBackExactlyAndTheManifestDescribesIt() throws {
        let dir = tempDir(self)
        let m = try makeSynthStore(dir, n: 23, perShard: 10)
        XCTAssertEqual(m.shards.map(\.samples), [10, 10, 3])
        XCTAssertEqual(m.schemaVersion, storeSchemaVersion)
        XCTAssertEqual(m.totalSamples, 23)
        XCTAssertEqual(m.splits?.values.reduce(0, +), 23)
        for s in m.shards {
            let (crc, bytes) = try CRC32.file(dir + "/" + s.file)
            XCTAssertEqual(hex32(crc), s.crc32); XCTAssertEqual(bytes, s.bytes)
        }
        let store = try FeatureStore(directory: dir)
        XCTAssertEqual(try Manifest.load(directory: dir), m)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 23, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<23)
        XCTAssertEqual(b.count, 23)
        let gen = SynthGenerator(SynthConfig(samples: 23, spec: smallSpec, seed: 7))
        var a = [Float](repeating: 0, count: smallSpec.audioRow), v = [Float](repeating: 0, count: smallSpec.videoRow)
        for i in 0..<23 {
            let meta = gen.sample(i, audio: &a, video: &v)
            XCTAssertEqual(b.globalIds[i], Int64(i))
            XCTAssertEqual(b.utteranceIds[i], meta.utteranceId)
            XCTAssertEqual(b.transcripts[i], meta.transcript)
            XCTAssertEqual(Array(b.audioRow(i)), a)
            XCTAssertEqual(Array(b.videoRow(i)), v)
            XCTAssertEqual(Int(b.audioLengths[i]), meta.audioLength)
            XCTAssertEqual(Int(b.videoLengths[i]), meta.videoLength)
            XCTAssertEqual(b.labels![i], meta.label)
            XCTAssertEqual(b.splits![i], meta.split.rawValue)
            // Padding past the true length is zero.
            XCTAssertTrue(a[(meta.audioLength * smallSpec.audioDim)...].allSatisfy { $0 == 0 })
        }
        // The shard file carries its place in the store.
        let f = try H5File.open(dir + "/" + m.shards[1].file)
        XCTAssertEqual(try f.attribute("global_offset", as: Int64.self), 10)
        XCTAssertEqual(try f.attribute("schema_version", as: Int32.self), Int32(storeSchemaVersion))
        XCTAssertEqual(try f.dataset("audio").storage.filters, ["fletcher32"])
    }

    func testTokensAreStoredWhenAVocabularyIsGiven() throws {
        let dir = tempDir(self)
        let vocabPath = dir + "/../vocab.txt"
        let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + Array(Set((synthSentimentTemplates + synthNeutralTemplates).flatMap { $0.split(separator: " ").map(String.init) } + synthLexicon.map(\.word))).sorted()
        try words.joined(separator: "\n").write(toFile: vocabPath, atomically: true, encoding: .utf8)
        let vocab = try WordVocabulary(path: vocabPath)
        var spec = smallSpec; spec.tokens = 12
        try writeSynthStore(directory: dir, config: SynthConfig(samples: 5, spec: spec, seed: 1), samplesPerShard: 5, vocabulary: vocab)
        let store = try FeatureStore(directory: dir)
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: 5, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 0..<5)
        for i in 0..<5 {
            let n = Int(b.tokenLengths![i])
            let ids = Array(b.tokens![(i * 12)..<(i * 12 + n)])
            let text = ids.dropFirst().dropLast().map { words[Int($0)] }
            XCTAssertEqual(ids.first, vocab.cls); XCTAssertEqual(ids.last, vocab.sep)
            XCTAssertEqual(text, Array(b.transcripts[i].split(separator: " ").map(String.init).prefix(10)))
            XCTAssertTrue(b.tokens![(i * 12 + n)..<(i * 12 + 12)].allSatisfy { $0 == 0 })
        }
    }

    func testReadingTheStoreWithH5pyGivesTheSameSample() throws {
        guard let py = python() else { throw XCTSkip("no Python venv with h5py (set SKESL_VENV_PYTHON or link .venv)") }
        let dir = tempDir(self)
        try makeSynthStore(dir, n: 12, perShard: 5)
        // The snippet of docs/feature-store.md, reading global sample 7.
        let script = """
        import json, h5py, zlib, sys
        store = sys.argv[1]
        m = json.load(open(store + "/manifest.json"))
        g = 7
        for s in m["shards"]:
            if g < s["samples"]: break
            g -= s["samples"]
        with h5py.File(store + "/" + s["file"], "r") as f:
            print(f["utterance_id"][g].decode(), f["transcript"][g].decode(), int(f["audio_length"][g]),
                  float(f["audio"][g].sum()), float(f["label"][g]))
        print(all(format(zlib.crc32(open(store + "/" + s["file"], "rb").read()), "08x") == s["crc32"] for s in m["shards"]))
        """
        let sp = dir + "/../read.py"
        try script.write(toFile: sp, atomically: true, encoding: .utf8)
        let (status, out) = try runProcess(py, [sp, dir])
        XCTAssertEqual(status, 0, out)
        let loader = try StoreLoader(store: FeatureStore(directory: dir), config: LoaderConfig(globalBatchSize: 1, shuffle: false))
        let b = loader.makeBatch(worldSize: 1)
        try loader.fill(b, epoch: 0, positions: 7..<8)
        let lines = out.split(separator: "\n")
        let f = lines[0].split(separator: " ")
        XCTAssertEqual(String(f[0]), b.utteranceIds[0])
        XCTAssertTrue(lines[0].contains(b.transcripts[0]))
        XCTAssertEqual(Float(f[f.count - 3]).map(Int.init), Int(b.audioLengths[0]))
        XCTAssertEqual(Double(f[f.count - 2])!, Double(b.audioRow(0).reduce(0, +)), accuracy: 1e-3)
        XCTAssertEqual(Float(f[f.count - 1])!, b.labels![0], accuracy: 1e-6)
        XCTAssertEqual(lines[1], "True")
    }
}
