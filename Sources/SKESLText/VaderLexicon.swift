// The VADER sentiment lexicon (`vader_lexicon.txt`: token, mean rating in [-4, 4],
// standard deviation, raw ratings; tab-separated), read as the vaderSentiment package
// reads it: blank lines skipped, a repeated token keeps its last score. The released
// SKESL code reads the same format with another rule (`Rule.reference`, below).
import Foundation

public struct VaderLexicon: Sendable {
    public let scores: [String: Double]
    public let source: String
    /// Under `Rule.reference`: keys whose value is not a number (key -> that value). The
    /// reference raises on any transcript containing one; we leave them out (docs/text.md).
    public let unscorable: [String: String]

    /// How a line becomes an entry.
    public enum Rule: String, Sendable {
        /// vaderSentiment's: `token<TAB>score<TAB>…`; multi-word tokens stay whole.
        case vader
        /// The released SKESL code's `load_lexicon`: the first two whitespace-separated
        /// fields, so `fed up<TAB>-1.8` becomes the key `fed` with the value `up`.
        case reference
    }

    public init(scores: [String: Double], source: String, unscorable: [String: String] = [:]) {
        self.scores = scores; self.source = source; self.unscorable = unscorable
    }

    public static func load(_ path: String, rule: Rule = .vader) throws -> VaderLexicon {
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
        return rule == .vader ? try parse(text, source: path) : try parseReference(text, source: path)
    }

    /// The reference's rule: every line split on whitespace, key = field 0, value = field 1,
    /// a repeated key keeps its last value (a dict built line by line). The reference
    /// converts a value with float() only when a transcript holds its key, and raises there
    /// if it is not a number; such keys are returned in `unscorable` and are not lexicon
    /// words here. A line with fewer than two fields (the reference fails on it while
    /// loading) is an error naming file and line.
    public static func parseReference(_ text: String, source: String) throws -> VaderLexicon {
        var raw: [String: (value: String, line: Int)] = [:]
        var lineNo = 0
        for line in universalLines(text) {
            lineNo += 1
            let fields = line.split(whereSeparator: { $0.isWhitespace })
            guard fields.count >= 2 else {
                throw TextError("\(source):\(lineNo): the reference's rule needs two whitespace-separated fields (token, score), got \(line.prefix(60).debugDescription)")
            }
            raw[String(fields[0])] = (String(fields[1]), lineNo)
        }
        var scores: [String: Double] = [:], unscorable: [String: String] = [:]
        for (key, entry) in raw {
            guard let s = Double(entry.value), s.isFinite else { unscorable[key] = entry.value; continue }
            guard abs(s) <= 4 else {
                throw TextError("\(source):\(entry.line): the score \(s) of \(key) lies outside VADER's [-4, 4]")
            }
            scores[key] = s
        }
        guard !scores.isEmpty else { throw TextError("\(source): the lexicon has no entries") }
        return VaderLexicon(scores: scores, source: source, unscorable: unscorable)
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

    /// The released SKESL code's lexicon, as scripts/setup writes it:
    /// `<root>/.venv/reference-lexicon/vader_lexicon.txt` (vaderSentiment 3.1.1's file with
    /// `:P` written `:p`, checked by its SHA-256).
    public static func locateReference(repoRoot: String? = nil) throws -> String {
        let python = PythonEnvironment.venvPython(repoRoot: repoRoot) ?? ((repoRoot ?? ".") + "/.venv/bin/python")
        let venv = ((python as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let p = venv + "/reference-lexicon/vader_lexicon.txt"
        guard FileManager.default.fileExists(atPath: p) else {
            throw TextError("\(p): the reference lexicon is missing: run scripts/setup (it downloads vaderSentiment 3.1.1 and applies the reference's one change), or give data.lexicon the path of the released code's data/vader_lexicon.txt with data.lexiconRule: reference")
        }
        return p
    }

    /// `round(0.75 × score, 3)` as Python rounds it (correctly rounded, ties to even).
    public static func target(score: Double) -> Double {
        Double(String(format: "%.3f", 0.75 * score))!
    }
}
