// The VADER sentiment lexicon (`vader_lexicon.txt`: token, mean rating in [-4, 4],
// standard deviation, raw ratings; tab-separated), read as the vaderSentiment package
// reads it: blank lines skipped, a repeated token keeps its last score.
import Foundation

public struct VaderLexicon: Sendable {
    public let scores: [String: Double]
    public let source: String

    public init(scores: [String: Double], source: String) {
        self.scores = scores; self.source = source
    }

    public static func load(_ path: String) throws -> VaderLexicon {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            throw TextError("\(path): no such lexicon file; pass the vader_lexicon.txt of the vaderSentiment package (run scripts/setup) or another file in its format")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TextError("\(path): cannot read the lexicon")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TextError("\(path): the lexicon is not UTF-8 text")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String) throws -> VaderLexicon {
        var scores: [String: Double] = [:]
        var lineNo = 0
        for raw in universalLines(text) {
            lineNo += 1
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 2, !fields[0].isEmpty else {
                throw TextError("\(source):\(lineNo): expected `token<TAB>score…`, got \(line.prefix(60).debugDescription)")
            }
            guard let s = Double(fields[1].trimmingCharacters(in: .whitespaces)), s.isFinite else {
                throw TextError("\(source):\(lineNo): the score \(fields[1].prefix(30).debugDescription) of \(fields[0]) is not a number")
            }
            guard abs(s) <= 4 else {
                throw TextError("\(source):\(lineNo): the score \(s) of \(fields[0]) lies outside VADER's [-4, 4]")
            }
            scores[String(fields[0])] = s
        }
        guard !scores.isEmpty else { throw TextError("\(source): the lexicon has no entries") }
        return VaderLexicon(scores: scores, source: source)
    }

    /// The `vader_lexicon.txt` of the vaderSentiment package in the project's venv:
    /// `<root>/.venv/lib/python3*/site-packages/vaderSentiment/`, else asked of the venv's python.
    public static func locateDefault(repoRoot: String? = nil) throws -> String {
        if let dir = PythonEnvironment.packageDirectory("vaderSentiment", repoRoot: repoRoot) {
            let p = (dir as NSString).appendingPathComponent("vader_lexicon.txt")
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw TextError("the VADER lexicon was not found: run scripts/setup (it installs vaderSentiment into .venv) or pass --lexicon PATH to a vader_lexicon.txt")
    }

    /// `round(0.75 × score, 3)` as Python rounds it (correctly rounded, ties to even).
    public static func target(score: Double) -> Double {
        Double(String(format: "%.3f", 0.75 * score))!
    }
}
