import Foundation
import XCTest
@testable import SKESLStore

final class SynthTests: XCTestCase {
    func testSynthIsDeterministicBySeed() throws {
        let a = tempDir(self, "a"), b = tempDir(self, "b"), c = tempDir(self, "c")
        let ma = try makeSynthStore(a, n: 40, perShard: 16, seed: 9)
        // Written in another second: a shard's bytes must not depend on when it was written
        // (HDF5 stores modification times unless told not to).
        Thread.sleep(forTimeInterval: 1.1)
        let mb = try makeSynthStore(b, n: 40, perShard: 16, seed: 9)
        let mc = try makeSynthStore(c, n: 40, perShard: 16, seed: 10)
        XCTAssertEqual(ma.shards.map(\.crc32), mb.shards.map(\.crc32))
        XCTAssertNotEqual(ma.shards.map(\.crc32), mc.shards.map(\.crc32))
    }

    /// Lexicon scores are VADER's, and neutral templates hold no lexicon word.
    func testLexiconWordsAndNeutralTemplatesAgreeWithVader() throws {
        guard let py = python() else { throw XCTSkip("no Python venv with vaderSentiment") }
        let (status, out) = try runProcess(py, ["-c", "import vaderSentiment, os; print(os.path.join(os.path.dirname(vaderSentiment.__file__), 'vader_lexicon.txt'))"])
        guard status == 0 else { throw XCTSkip("vaderSentiment is not installed: \(out)") }
        let path = out.trimmingCharacters(in: .whitespacesAndNewlines)
        var lex: [String: Float] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(whereSeparator: \.isNewline) {
            let f = line.split(separator: "\t")
            if f.count >= 2, let v = Float(f[1]) { lex[String(f[0])] = v }
        }
        for (w, s) in synthLexicon { XCTAssertEqual(lex[w], s, w) }
        for t in synthNeutralTemplates + synthSentimentTemplates {
            for w in t.split(separator: " ") where w != "W" { XCTAssertNil(lex[String(w)], "\"\(w)\" of \"\(t)\" is a VADER word") }
        }
    }

    /// Least-squares R^2 of the label on the given columns (plus an intercept).
    func r2(_ x: [[Double]], _ y: [Double]) -> Double {
        let n = y.count, p = x[0].count + 1
        var xtx = [Double](repeating: 0, count: p * p), xty = [Double](repeating: 0, count: p)
        for i in 0..<n {
            let row = [1.0] + x[i]
            for a in 0..<p { xty[a] += row[a] * y[i]; for b in 0..<p { xtx[a * p + b] += row[a] * row[b] } }
        }
        for a in 0..<p { xtx[a * p + a] += 1e-6 }
        // Gauss-Jordan solve.
        var m = xtx, v = xty
        for c in 0..<p {
            let piv = (c..<p).max { abs(m[$0 * p + c]) < abs(m[$1 * p + c]) }!
            if piv != c { for k in 0..<p { m.swapAt(c * p + k, piv * p + k) }; v.swapAt(c, piv) }
            for r in 0..<p where r != c {
                let f = m[r * p + c] / m[c * p + c]
                for k in 0..<p { m[r * p + k] -= f * m[c * p + k] }
                v[r] -= f * v[c]
            }
        }
        let beta = (0..<p).map { v[$0] / m[$0 * p + $0] }
        let mean = y.reduce(0, +) / Double(n)
        var ssr = 0.0, sst = 0.0
        for i in 0..<n {
            let pred = zip([1.0] + x[i], beta).map(*).reduce(0, +)
            ssr += (y[i] - pred) * (y[i] - pred); sst += (y[i] - mean) * (y[i] - mean)
        }
        return 1 - ssr / sst
    }

    /// Text alone predicts the label poorly; text with audio and video predicts it well.
    func testLabelsNeedAllThreeModalities() throws {
        let spec = FeatureSpec(audioFrames: 10, audioDim: 6, videoFrames: 5, videoDim: 6, tokens: nil, labeled: true)
        let gen = SynthGenerator(SynthConfig(samples: 2000, spec: spec, seed: 3))
        var a = [Float](repeating: 0, count: spec.audioRow), v = [Float](repeating: 0, count: spec.videoRow)
        let score = Dictionary(uniqueKeysWithValues: synthLexicon.map { ($0.word, $0.score) })
        var xt: [[Double]] = [], xta: [[Double]] = [], xall: [[Double]] = [], y: [Double] = []
        var neutral = 0
        for i in 0..<2000 {
            let m = gen.sample(i, audio: &a, video: &v)
            // The text feature an SWM-style model sees: the lexicon word's score.
            let s = m.transcript.split(separator: " ").compactMap { score[String($0)] }.first ?? 0
            if s == 0 { neutral += 1 }
            func means(_ x: [Float], _ len: Int, _ dim: Int) -> [Double] {
                (0..<dim).map { d in (0..<len).map { Double(x[$0 * dim + d]) }.reduce(0, +) / Double(max(len, 1)) }
            }
            let am = means(a, m.audioLength, spec.audioDim), vm = means(v, m.videoLength, spec.videoDim)
            xt.append([Double(s)]); xta.append([Double(s)] + am); xall.append([Double(s)] + am + vm)
            y.append(Double(m.label))
            XCTAssertTrue((-3...3).contains(m.label))
        }
        let (rt, rta, rall) = (r2(xt, y), r2(xta, y), r2(xall, y))
        print("synth R^2 of linear fits: text \(rt), text+audio \(rta), text+audio+video \(rall)")
        XCTAssertEqual(Double(neutral) / 2000, 0.15, accuracy: 0.03)
        XCTAssertLessThan(rt, 0.4)
        XCTAssertGreaterThan(rta, rt + 0.15)
        XCTAssertGreaterThan(rall, rta + 0.15)
        XCTAssertGreaterThan(rall, 0.85)
    }

    func testSynthOf2000SamplesIsQuick() throws {
        // Not a timing assertion: it has to finish within the test suite at all; the
        // figure is printed for the record.
        let dir = tempDir(self)
        let t0 = Date()
        let m = try makeSynthStore(dir, n: 2000, perShard: 500, spec: FeatureSpec(audioFrames: 20, audioDim: 8, videoFrames: 10, videoDim: 8, labeled: true))
        print("synth: 2000 samples in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
        XCTAssertEqual(m.totalSamples, 2000)
        XCTAssertTrue(try verifyStore(directory: dir).ok)
    }
}
