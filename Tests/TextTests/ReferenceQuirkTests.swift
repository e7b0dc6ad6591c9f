// The released SKESL code's lexicon rule and window mask (docs/text.md, reference quirks),
// against fixtures that scripts/make_reference_fixtures.py writes from the released code's
// paths (scripts/torch_reference.py).
import Foundation
import XCTest
import TestSupport
import SKESLHDF5
import SKESLModel
@testable import SKESLText

final class ReferenceQuirkTests: XCTestCase {
    // MARK: the lexicon's parsing rule

    func testReferenceRuleSplitsOnWhitespaceAndSetsAsideWhatIsNotANumber() throws {
        let text = "good\t1.9\t0.9\t[2]\nscrewed\t-2.2\t0.4\t[-2]\nfed up\t-1.8\t1.2\t[-2]\n( '}{' )\t1.6\t0.6\t[1]\n"
            + "screwed up\t-1.5\t0.6\t[-2]\ncan't stand\t-2.0\t0.6\t[-2]\n:p\t1.0\t0.7\t[1]\n:p\t1.4\t0.8\t[3]\n"
        let ref = try VaderLexicon.parseReference(text, source: "t")
        XCTAssertEqual(ref.scores, ["good": 1.9, ":p": 1.4])          // last value wins, as a dict
        // `screwed up` overwrites the real `screwed` entry with the value "up".
        XCTAssertEqual(ref.unscorable, ["screwed": "up", "fed": "up", "(": "'}{'", "can't": "stand"])
        let vader = try VaderLexicon.parse(text, source: "t")
        XCTAssertEqual(vader.scores["screwed"], -2.2)
        XCTAssertEqual(vader.scores["fed up"], -1.8)
        XCTAssertEqual(vader.scores["( '}{' )"], 1.6)
        XCTAssertTrue(vader.unscorable.isEmpty)
        // The reference fails while loading on a line without two fields (a blank one too).
        XCTAssertThrowsError(try VaderLexicon.parseReference("good\t1.9\n\nbad\t-2.5\n", source: "lex.txt")) {
            XCTAssertTrue("\($0)".contains("lex.txt:2"), "\($0)")
        }
        XCTAssertThrowsError(try VaderLexicon.parseReference("good 9.5\n", source: "lex.txt")) {
            XCTAssertTrue("\($0)".contains("outside"), "\($0)")
        }
    }

    // MARK: masking with the reference lexicon

    struct Outcome: Decodable {
        let input_ids: [Int32], token_type_ids: [Int32], attention_mask: [Int32]
        let target: Double, mask_position: Int
    }
    struct Case: Decodable {
        let text: String
        let reference: Outcome?
        let reference_raises: String?
        let odd_keys: [String]?
        let skesl: Outcome?
        let target_vader_3_3_2: Double?
    }
    struct MaskingFixture: Decodable {
        let lexicon_sha256: String
        let unscorable: [String: String]
        let max_length: Int
        let cases: [Case]
    }

    func referenceLexicon() throws -> VaderLexicon {
        let path: String
        do { path = try VaderLexicon.locateReference(repoRoot: Fixtures.repoRoot) } catch {
            throw XCTSkip("\(error)")
        }
        return try VaderLexicon.load(path, rule: .reference)
    }

    func testMaskingMatchesTheReleasedCodeWithItsLexicon() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("reference_masking.json")))
        let fx = try JSONDecoder().decode(MaskingFixture.self, from: data)
        let lex = try referenceLexicon()
        XCTAssertEqual(lex.unscorable, fx.unscorable)
        let tok = try BertTokenizer.load(Fixtures.path("vocab_uncased.txt"))
        let quirk = try SentimentMasker(tokenizer: tok, lexicon: lex, maxLength: fx.max_length, windowAttendsPadding: true)
        let plain = try SentimentMasker(tokenizer: tok, lexicon: lex, maxLength: fx.max_length)
        let current = try SentimentMasker(tokenizer: tok, lexicon: try VaderLexicon.load(try VaderLexicon.locateDefault(repoRoot: Fixtures.repoRoot)),
                                          maxLength: fx.max_length)
        var windowed = 0, raising = 0, newerDiffers = 0
        for c in fx.cases {
            // Where the released code raises (a key whose value is not a number), skesl
            // masks as if that key were not in the lexicon.
            let want = try XCTUnwrap(c.reference ?? c.skesl, c.text)
            if c.reference_raises != nil {
                raising += 1
                XCTAssertFalse(c.odd_keys?.isEmpty ?? true, c.text)
                for k in c.odd_keys ?? [] { XCTAssertNotNil(lex.unscorable[k], k) }
            }
            let s = quirk.mask(text: c.text, seed: 0, epoch: 0, sample: 0)
            XCTAssertEqual(s.encoding.inputIds, want.input_ids, c.text)
            XCTAssertEqual(s.encoding.tokenTypeIds, want.token_type_ids, c.text)
            XCTAssertEqual(s.encoding.attentionMask, want.attention_mask, c.text)
            XCTAssertEqual(s.maskPosition, want.mask_position, c.text)
            XCTAssertEqual(Double(s.target), want.target, accuracy: 1e-6, c.text)
            // skesl's default masks the window's padding; nothing else changes.
            let p = plain.mask(text: c.text, seed: 0, epoch: 0, sample: 0)
            XCTAssertEqual(p.encoding.inputIds, want.input_ids, c.text)
            XCTAssertEqual(p.encoding.attentionMask, want.input_ids.map { $0 == 0 ? 0 : 1 }, c.text)
            if want.mask_position == 21 && want.input_ids.contains(0) {
                windowed += 1
                XCTAssertNotEqual(p.encoding.attentionMask, s.encoding.attentionMask, c.text)
            }
            // The lexicon of the installed vaderSentiment (3.3.2) differs on a few words.
            if let t = c.target_vader_3_3_2 {
                let n = current.mask(text: c.text, seed: 0, epoch: 0, sample: 0)
                XCTAssertEqual(Double(n.target), t, accuracy: 1e-6, c.text)
                if abs(t - want.target) > 1e-6 { newerDiffers += 1 }
            }
        }
        XCTAssertEqual(raising, 4)
        XCTAssertGreaterThanOrEqual(windowed, 2)
        XCTAssertGreaterThanOrEqual(newerDiffers, 3)   // heart, hearts, flawed
    }

    // MARK: the window's attention mask through the model

    func testWindowMaskForwardMatchesTheReference() throws {
        let path = (Fixtures.repoRoot as NSString).appendingPathComponent("Tests/Fixtures/model/reference_window.h5")
        let f = try H5File.open(path)
        let config = try WeightsFile.config(in: f)
        let vocab = try JSONDecoder().decode([String].self, from: Data(try f.stringAttribute("vocab_json").utf8))
        let texts = try JSONDecoder().decode([String].self, from: Data(try f.stringAttribute("texts_json").utf8))
        let tok = try BertTokenizer(vocabulary: vocab.enumerated().map { ($0.element, $0.offset) },
                                    specialTokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], options: .uncased, source: "fixture vocab")
        let lex = try VaderLexicon.parseReference(try f.stringAttribute("lexicon_text"), source: "fixture lexicon")
        let ids = try f.read("/batch/input_ids", as: Int32.self)
        let (B, L) = (ids.shape[0], ids.shape[1])
        XCTAssertEqual(texts.count, B)
        let audio = try f.read("/batch/audio", as: Float.self), video = try f.read("/batch/video", as: Float.self)
        let refAtt = try f.read("/batch/attention_mask", as: Int32.self).values
        let refPos = try f.read("/batch/mask_pos", as: Int32.self).values
        let refTargets = try f.read("/batch/targets", as: Float.self).values

        func predictions(windowAttendsPadding: Bool) throws -> [Float] {
            let masker = try SentimentMasker(tokenizer: tok, lexicon: lex, maxLength: L, windowAttendsPadding: windowAttendsPadding)
            let st = BatchStorage(size: B, textLength: L, audioFrames: audio.shape[1], audioDim: audio.shape[2],
                                  videoFrames: video.shape[1], videoDim: video.shape[2])
            for (b, t) in texts.enumerated() {
                let s = masker.mask(text: t, seed: 0, epoch: 0, sample: UInt64(b))
                XCTAssertEqual(s.encoding.inputIds, Array(ids.values[b * L ..< (b + 1) * L]), "sample \(b)")
                if windowAttendsPadding {
                    XCTAssertEqual(s.encoding.attentionMask, Array(refAtt[b * L ..< (b + 1) * L]), "sample \(b)")
                }
                XCTAssertEqual(Int32(s.maskPosition), refPos[b])
                XCTAssertEqual(s.target, refTargets[b], accuracy: 1e-6)
                (st.inputIds + b * L).update(from: s.encoding.inputIds, count: L)
                (st.tokenTypeIds + b * L).update(from: s.encoding.tokenTypeIds, count: L)
                (st.attentionMask + b * L).update(from: s.encoding.attentionMask, count: L)
                st.maskPositions[b] = Int32(s.maskPosition)
                st.targets[b] = s.target
                st.sampleIds[b] = Int64(b)
            }
            st.audio.update(from: audio.values, count: audio.values.count)
            st.video.update(from: video.values, count: video.values.count)
            st.audioLengths.update(from: try f.read("/batch/audio_lengths", as: Int32.self).values, count: B)
            st.videoLengths.update(from: try f.read("/batch/video_lengths", as: Int32.self).values, count: B)
            let net = try SKESLNetwork(config: config)
            _ = try WeightsFile.read(into: net, from: f)
            _ = try net.forward(st.batch(), training: false)
            return Array(UnsafeBufferPointer(start: net.predictions, count: B))
        }
        let quirk = try predictions(windowAttendsPadding: true)
        let masked = try predictions(windowAttendsPadding: false)
        let refQuirk = try f.read("/outputs/prediction", as: Float.self).values
        let refMasked = try f.read("/outputs/prediction_padding_masked", as: Float.self).values
        for b in 0..<B {
            XCTAssertEqual(quirk[b], refQuirk[b], accuracy: 1e-5, "sample \(b), reference window mask")
            XCTAssertEqual(masked[b], refMasked[b], accuracy: 1e-5, "sample \(b), padding masked")
        }
        // The quirk matters only where the window holds padding (sample 0).
        XCTAssertGreaterThan(abs(quirk[0] - masked[0]), 1e-3)
    }
}
