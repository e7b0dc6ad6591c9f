// `skesl tokenize` end to end: the built executable, fed on standard input.
import XCTest
import TestSupport
@testable import SKESLText

final class TokenizeCommandTests: XCTestCase {
    func binary() throws -> URL {
        // The executable sits beside the test bundle in .build/<triple>/<config>/.
        // On Linux the test runner is the .xctest executable itself.
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("skesl"),
            Bundle(for: Self.self).bundleURL.deletingLastPathComponent().appendingPathComponent("skesl"),
        ]
        for u in candidates where FileManager.default.isExecutableFile(atPath: u.path) { return u }
        throw XCTSkip("skesl is not built beside the tests (swift build --build-tests builds it)")
    }

    func run(_ args: [String], input: String) throws -> (out: String, err: String, status: Int32) {
        let p = Process()
        p.executableURL = try binary()
        p.arguments = args
        let i = Pipe(), o = Pipe(), e = Pipe()
        p.standardInput = i; p.standardOutput = o; p.standardError = e
        try p.run()
        i.fileHandleForWriting.write(input.data(using: .utf8)!)
        try i.fileHandleForWriting.close()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), p.terminationStatus)
    }

    func objects(_ s: String) throws -> [[String: Any]] {
        try s.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    func testPlainEncodingPerLine() throws {
        let vocab = Fixtures.path("vocab_uncased.txt")
        let lines = ["Hello, world!", "", "café 😀 [MASK] 我喜欢", String(repeating: "word ", count: 60)]
        let r = try run(["tokenize", "--tokenizer", vocab, "--max-length", "16"], input: lines.joined(separator: "\n") + "\n")
        XCTAssertEqual(r.status, 0, r.err)
        let objs = try objects(r.out)
        XCTAssertEqual(objs.count, lines.count)
        let tok = try BertTokenizer.load(vocab)
        for (o, l) in zip(objs, lines) {
            let e = tok.encode(l, maxLength: 16)
            XCTAssertEqual((o["input_ids"] as! [Int]).map(Int32.init), e.inputIds)
            XCTAssertEqual((o["attention_mask"] as! [Int]).map(Int32.init), e.attentionMask)
            XCTAssertEqual(o["token_type_ids"] as! [Int], [Int](repeating: 0, count: 16))
            XCTAssertNil(o["mask_position"])
        }
    }

    func testMaskingWithLexiconSeedAndLineNumbers() throws {
        let dir = try Fixtures.tempDir("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lex = (dir as NSString).appendingPathComponent("lex.txt")
        try "good\t1.9\t0\t[]\nhate\t-2.7\t0\t[]\n".write(toFile: lex, atomically: true, encoding: .utf8)
        let vocab = Fixtures.path("vocab_uncased.txt")
        let lines = ["the film was good", "i hate it and i hate you", "nothing to see here", "plain words"]
        let args = ["tokenize", "--tokenizer", vocab, "--lexicon", lex, "--seed", "11", "--epoch", "4"]
        let r = try run(args, input: lines.joined(separator: "\n"))
        XCTAssertEqual(r.status, 0, r.err)
        let objs = try objects(r.out)
        XCTAssertEqual(objs.count, 4)
        let m = try SentimentMasker(tokenizer: BertTokenizer.load(vocab), lexicon: VaderLexicon.load(lex))
        for (i, (o, l)) in zip(objs, lines).enumerated() {
            let s = m.mask(text: l, seed: 11, epoch: 4, sample: UInt64(i))
            XCTAssertEqual((o["input_ids"] as! [Int]).map(Int32.init), s.encoding.inputIds, "line \(i)")
            XCTAssertEqual(o["mask_position"] as? Int, s.maskPosition)
            XCTAssertEqual((o["target"] as! NSNumber).floatValue, s.target)
            XCTAssertEqual((o["input_ids"] as! [Int])[s.maskPosition], 103)
        }
        XCTAssertEqual(objs[0]["mask_position"] as? Int, 4)
        XCTAssertEqual((objs[1]["target"] as! NSNumber).doubleValue, -2.025)
        XCTAssertEqual((objs[1]["input_ids"] as! [Int]).filter { $0 == 103 }.count, 2)
        // The same run gives the same masks.
        XCTAssertEqual(try run(args, input: lines.joined(separator: "\n")).out, r.out)
    }

    func testBadFlagsAndPathsAreClearErrors() throws {
        let vocab = Fixtures.path("vocab_uncased.txt")
        var r = try run(["tokenize", "--tokenizer", vocab, "--frobnicate"], input: "")
        XCTAssertNotEqual(r.status, 0); XCTAssert(r.err.contains("Unknown option '--frobnicate'"), r.err)
        r = try run(["tokenize", "--tokenizer", "/no/such/dir"], input: "x\n")
        XCTAssertNotEqual(r.status, 0); XCTAssert(r.err.contains("/no/such/dir: no such file or directory"), r.err)
        r = try run(["tokenize", "--tokenizer", vocab, "--lexicon", "/no/lex.txt"], input: "x\n")
        XCTAssertNotEqual(r.status, 0); XCTAssert(r.err.contains("/no/lex.txt: no such lexicon file"), r.err)
        r = try run(["tokenize", "--tokenizer", vocab, "--max-length", "1"], input: "x\n")
        XCTAssertNotEqual(r.status, 0); XCTAssert(r.err.contains("--max-length must be at least 2"), r.err)
        XCTAssertEqual(r.out, "")
    }
}
