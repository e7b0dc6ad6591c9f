// The tokenizer against Hugging Face's ids on the committed corpus
// (scripts/make_text_fixtures.py): every line, uncased, cased and a tokenizer.json.
import XCTest
import TestSupport
@testable import SKESLText

final class TokenizerParityTests: XCTestCase {
    struct Case { let text: String; let fields: [String: Any] }

    static let corpus: (maxLength: Int, cases: [[String: Any]]) = {
        let j = try! Fixtures.json("parity.json") as! [String: Any]
        return (j["max_length"] as! Int, j["cases"] as! [[String: Any]])
    }()

    private func ids(_ v: Any?) -> [Int32] { (v as! [NSNumber]).map { Int32($0.intValue) } }

    private func check(_ tok: BertTokenizer, key: String, file: StaticString = #filePath, line: UInt = #line) {
        let cases = Self.corpus.cases
        XCTAssertGreaterThanOrEqual(cases.count, 2000)
        var failures = 0
        for (i, c) in cases.enumerated() {
            let text = c["text"] as! String
            let want = ids(c[key])
            let got = [tok.clsId] + tok.wordPieceIds(text) + [tok.sepId]
            if got != want {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(key) line \(i) \(text.unicodeScalars.map { String($0.value, radix: 16) }.prefix(20)): got \(got.prefix(30)) want \(want.prefix(30))",
                            file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(key): \(failures) of \(cases.count) lines differ", file: file, line: line)
    }

    func testUncasedVocabTxtMatchesHuggingFaceOnEveryLine() throws {
        let tok = try BertTokenizer.load(Fixtures.path("vocab_uncased.txt"), options: .uncased)
        XCTAssertEqual(tok.vocabularySize, 30522)
        check(tok, key: "uncased")
    }

    func testCasedVocabTxtMatchesHuggingFaceOnEveryLine() throws {
        let tok = try BertTokenizer.load(Fixtures.path("vocab_cased.txt"), options: .cased)
        check(tok, key: "cased")
    }

    func testTokenizerJSONMatchesHuggingFaceOnEveryLine() throws {
        let tok = try BertTokenizer.load(Fixtures.path("tiny_tokenizer.json"))
        XCTAssertFalse(tok.options.lowercase)
        XCTAssertEqual(tok.options.stripAccents, true)
        XCTAssertFalse(tok.options.handleChineseChars)
        XCTAssertEqual(tok.options.maxInputCharsPerWord, 12)
        check(tok, key: "tiny")
    }

    func testTruncationAndPaddingMatchHuggingFaceAtLength39() throws {
        let tok = try BertTokenizer.load(Fixtures.path("vocab_uncased.txt"))
        let L = Self.corpus.maxLength
        XCTAssertEqual(L, 39)
        var truncated = 0
        for (i, c) in Self.corpus.cases.enumerated() {
            let e = tok.encode(c["text"] as! String, maxLength: L)
            let real = (c["uncased_39_real"] as! NSNumber).intValue
            XCTAssertEqual(e.inputIds, ids(c["uncased_39"]), "line \(i)")
            XCTAssertEqual(e.attentionMask, [Int32](repeating: 1, count: real) + [Int32](repeating: 0, count: L - real), "line \(i)")
            XCTAssertEqual(e.tokenTypeIds, [Int32](repeating: 0, count: L))
            if real == L { truncated += 1 }
        }
        XCTAssertGreaterThan(truncated, 100, "the corpus should exercise truncation")
    }
}
