// Sentiment word masking: cases worked by hand, then properties over many random
// transcripts, the VADER lexicon and its errors.
import XCTest
import TestSupport
import SKESLKernels
@testable import SKESLText

final class SentimentMaskingTests: XCTestCase {
    // ids: [PAD]0 [UNK]1 [CLS]2 [SEP]3 [MASK]4 the5 movie6 was7 good8 great9 bad10 not11 ##s12 love13 horrible14 a15
    static let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good", "great",
                        "bad", "not", "##s", "love", "horrible", "a"]
    static let lexiconText = "good\t1.9\t0.9\t[2, 2]\ngreat\t3.1\t0.7\t[3]\nbad\t-2.5\t0.7\t[-2]\n\nlove\t3.2\t0.4\t[3]\nhorrible\t-2.5\t0.5\t[-3]\n"

    func makeMasker(maxLength: Int = 39) throws -> SentimentMasker {
        let tok = try BertTokenizer(vocabulary: Self.words.enumerated().map { ($0.element, $0.offset) },
                                    specialTokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                                    options: .uncased, source: "test vocab")
        let lex = try VaderLexicon.parse(Self.lexiconText, source: "test lexicon")
        return try SentimentMasker(tokenizer: tok, lexicon: lex, maxLength: maxLength)
    }

    func padded(_ ids: [Int32], _ L: Int = 39) -> [Int32] { ids + [Int32](repeating: 0, count: L - ids.count) }

    func testStrongestWordIsMaskedWithScaledTarget() throws {
        let m = try makeMasker()
        let s = m.mask(text: "The movie was GOOD", seed: 1, epoch: 0, sample: 0)
        XCTAssertEqual(s.encoding.inputIds, padded([2, 5, 6, 7, 4, 3]))
        XCTAssertEqual(s.encoding.attentionMask, padded([1, 1, 1, 1, 1, 1]))
        XCTAssertEqual(s.maskPosition, 4)
        XCTAssertEqual(s.target, Float(1.425))           // round(0.75 * 1.9, 3)
        XCTAssertEqual(s.maskedToken, 8)
        // The larger |score| wins over an earlier, weaker word.
        let t = m.mask(text: "good movie great", seed: 1, epoch: 0, sample: 0)
        XCTAssertEqual(t.encoding.inputIds, padded([2, 8, 6, 4, 3]))
        XCTAssertEqual(t.maskPosition, 3)
        XCTAssertEqual(t.target, Float(2.325))
    }

    func testTiesGoToTheFirstAndEveryOccurrenceIsMasked() throws {
        let m = try makeMasker()
        // bad and horrible both score -2.5: bad comes first; both bads are masked.
        let s = m.mask(text: "horrible bad movie bad horrible", seed: 1, epoch: 0, sample: 0)
        XCTAssertEqual(s.encoding.inputIds, padded([2, 4, 10, 6, 10, 4, 3]))
        XCTAssertEqual(s.maskPosition, 1)
        XCTAssertEqual(s.target, Float(-1.875))
        let g = m.mask(text: "good movie good", seed: 1, epoch: 0, sample: 0)
        XCTAssertEqual(g.encoding.inputIds, padded([2, 4, 6, 4, 3]))
        XCTAssertEqual(g.maskPosition, 1)
    }

    func testNoSentimentWordMasksAKeyedRandomPosition() throws {
        let m = try makeMasker()
        let ids: [Int32] = [5, 6, 7, 11, 15]
        for sample in 0..<20 as Range<UInt64> {
            let s = m.mask(ids: ids, seed: 7, epoch: 3, sample: sample)
            let j = KeyedRandom(seed: 7, stream: "swm", sample: sample, epoch: 3).integer(0, below: 5)
            var want = ids; want[j] = 4
            XCTAssertEqual(s.encoding.inputIds, padded([2] + want + [3]))
            XCTAssertEqual(s.maskPosition, j + 1)
            XCTAssertEqual(s.target, 0)
            XCTAssertNil(s.maskedToken)
            // Same key, same mask: on any rank, after a resume.
            XCTAssertEqual(m.mask(ids: ids, seed: 7, epoch: 3, sample: sample), s)
        }
        let positions = Set((0..<64 as Range<UInt64>).map { m.mask(ids: ids, seed: 7, epoch: 0, sample: $0).maskPosition })
        XCTAssertEqual(positions, Set(1...5), "every position is drawn")
        let epochs = Set((0..<32 as Range<UInt64>).map { m.mask(ids: ids, seed: 7, epoch: $0, sample: 0).maskPosition })
        XCTAssertGreaterThan(epochs.count, 1, "a sample masks differently across epochs")
    }

    func testRandomPositionStaysAmongTheFirst37() throws {
        let m = try makeMasker()
        let ids = [Int32](repeating: 5, count: 100)
        for sample in 0..<200 as Range<UInt64> {
            let s = m.mask(ids: ids, seed: 3, epoch: 0, sample: sample)
            XCTAssert((1...37).contains(s.maskPosition))
            XCTAssertEqual(s.encoding.inputIds[s.maskPosition], 4)
            XCTAssertEqual(s.encoding.inputIds[38], 3)
        }
    }

    func testMaskPastToken36KeepsTheWindowAroundIt() throws {
        let m = try makeMasker()
        // 45 x "the", then "good" at index 45, then 5 x "the": window [25, 64) ∩ [0, 51), cut to 37.
        let ids = [Int32](repeating: 5, count: 45) + [8] + [Int32](repeating: 5, count: 5)
        let s = m.mask(ids: ids, seed: 0, epoch: 0, sample: 0)
        XCTAssertEqual(s.maskPosition, 21)
        XCTAssertEqual(s.encoding.inputIds, padded([2] + [Int32](repeating: 5, count: 20) + [4] + [Int32](repeating: 5, count: 5) + [3]))
        // At index 36 the word still fits: no window.
        let fits = [Int32](repeating: 5, count: 36) + [8] + [Int32](repeating: 5, count: 10)
        let f = m.mask(ids: fits, seed: 0, epoch: 0, sample: 0)
        XCTAssertEqual(f.maskPosition, 37)
        XCTAssertEqual(f.encoding.inputIds, [2] + [Int32](repeating: 5, count: 36) + [4, 3])
        // At index 37 it does not: tokens [17, 54) are kept, the mask lands at 21, the end is cut.
        let past = [Int32](repeating: 5, count: 37) + [8] + (0..<30).map { Int32(5 + $0 % 3) }
        let p = m.mask(ids: past, seed: 0, epoch: 0, sample: 0)
        XCTAssertEqual(p.maskPosition, 21)
        XCTAssertEqual(Array(p.encoding.inputIds[1...37]), Array(past[17..<54]).map { $0 == 8 ? 4 : $0 })
        XCTAssertEqual(p.encoding.inputIds[38], 3)
    }

    func testEmptyTranscriptBecomesOneMask() throws {
        let m = try makeMasker()
        let s = m.mask(text: "  ", seed: 1, epoch: 0, sample: 9)
        XCTAssertEqual(s.encoding.inputIds, padded([2, 4, 3]))
        XCTAssertEqual(s.maskPosition, 1)
        XCTAssertEqual(s.target, 0)
    }

    func testPropertiesOverRandomTranscripts() throws {
        let m = try makeMasker()
        let lexiconIds: Set<Int32> = [8, 9, 10, 13, 14]
        var fallbacks = 0
        for sample in 0..<2000 as Range<UInt64> {
            let r = KeyedRandom(seed: 99, stream: "test-transcripts", sample: sample)
            let n = r.integer(0, below: 80)
            let ids = (0..<n).map { i -> Int32 in
                let u = r.integer(1 + i, below: 100)
                return u < 6 ? Int32([8, 9, 10, 13, 14, 8][u]) : Int32(5 + u % 4 == 8 ? 11 : 5 + u % 4)
            }
            let s = m.mask(ids: ids, seed: 5, epoch: 2, sample: sample)
            let e = s.encoding
            XCTAssertEqual(e.inputIds.count, 39)
            XCTAssert((-3...3).contains(s.target))
            XCTAssert((1..<38).contains(s.maskPosition), "mask inside the window")
            XCTAssertEqual(e.inputIds[s.maskPosition], 4)
            XCTAssertFalse(e.inputIds[1..<s.maskPosition].contains(4), "the position is the first mask")
            let real = e.attentionMask.filter { $0 == 1 }.count
            XCTAssertEqual(e.inputIds[real - 1], 3)
            XCTAssert(e.inputIds[real...].allSatisfy { $0 == 0 })
            if let t = s.maskedToken {
                XCTAssert(lexiconIds.contains(t))
                XCTAssertFalse(e.inputIds.contains(t), "every occurrence of the chosen token is masked")
                XCTAssertFalse(ids.contains { m.absScoreForTest($0) > m.absScoreForTest(t) })
            } else {
                fallbacks += 1
                XCTAssertEqual(s.target, 0.0)
                XCTAssertEqual(e.inputIds.filter { $0 == 4 }.count, 1)
                XCTAssertFalse(ids.contains { lexiconIds.contains($0) })
            }
        }
        XCTAssertGreaterThan(fallbacks, 50)
    }

    // MARK: lexicon

    func testTargetsRoundAsPythonDoesForEveryVaderScore() throws {
        let table = try Fixtures.json("vader_targets.json") as! [[Double]]
        XCTAssertGreaterThan(table.count, 50)
        for row in table {
            XCTAssertEqual(VaderLexicon.target(score: row[0]), row[1], "score \(row[0])")
            XCTAssert((-3...3).contains(row[1]))
        }
    }

    func testRealVaderLexiconFromTheVenv() throws {
        let path: String
        do { path = try VaderLexicon.locateDefault(repoRoot: Fixtures.repoRoot) }
        catch { throw XCTSkip("vaderSentiment is not installed in .venv (scripts/setup): \(error)") }
        let lex = try VaderLexicon.load(path)
        XCTAssertGreaterThan(lex.scores.count, 7000)
        XCTAssertEqual(lex.scores["good"], 1.9)
        XCTAssertEqual(lex.scores["hate"], -2.7)
        let tok = try BertTokenizer.load(Fixtures.path("vocab_uncased.txt"))
        let m = try SentimentMasker(tokenizer: tok, lexicon: lex)
        XCTAssertGreaterThan(m.lexiconTokenCount, 2000)
        let s = m.mask(text: "I really hate this movie, but the actors were good.", seed: 0, epoch: 0, sample: 0)
        XCTAssertEqual(tok.tokens[Int(s.maskedToken!)], "hate")
        XCTAssertEqual(s.target, Float(-2.025))
        XCTAssertEqual(s.maskPosition, 3)
    }

    func testMalformedOrMissingLexiconIsAClearError() {
        func message(_ f: () throws -> Any) -> String {
            do { _ = try f(); return "no error" } catch { return "\(error)" }
        }
        XCTAssert(message { try VaderLexicon.parse("good 1.9\n", source: "L") }.contains("L:1: expected `token<TAB>score"))
        XCTAssert(message { try VaderLexicon.parse("good\t1.9\nbad\tx\n", source: "L") }.contains("L:2: the score \"x\" of bad is not a number"))
        XCTAssert(message { try VaderLexicon.parse("good\tnan\n", source: "L") }.contains("not a number"))
        XCTAssert(message { try VaderLexicon.parse("good\t9\n", source: "L") }.contains("outside VADER's [-4, 4]"))
        XCTAssert(message { try VaderLexicon.parse("\n\n", source: "L") }.contains("no entries"))
        XCTAssert(message { try VaderLexicon.load("/nonexistent/vader.txt") }.contains("/nonexistent/vader.txt: no such lexicon file"))
    }

    func testVocabularyWithoutMaskCannotMask() throws {
        let tok = try BertTokenizer(vocabulary: [("[PAD]", 0), ("[UNK]", 1), ("[CLS]", 2), ("[SEP]", 3), ("good", 4)],
                                    specialTokens: [], options: .uncased, source: "v.txt")
        let lex = try VaderLexicon.parse("good\t1.9\n", source: "L")
        XCTAssertThrowsError(try SentimentMasker(tokenizer: tok, lexicon: lex)) {
            XCTAssert("\($0)".contains("v.txt: the vocabulary has no [MASK] token"))
        }
    }
}

extension SentimentMasker {
    func absScoreForTest(_ id: Int32) -> Double {
        let t = tokenizer.tokens[Int(id)]
        return ["good": 1.9, "great": 3.1, "bad": 2.5, "love": 3.2, "horrible": 2.5][t] ?? -1
    }
}
