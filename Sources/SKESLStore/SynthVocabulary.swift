// A small BERT vocabulary covering every word of the synthetic corpus, for runs that
// have no pretrained BERT at hand (tests; the demo when the MiniLM package is missing).
import Foundation
import SKESLStore

public enum SynthVocabulary {
    /// [PAD] [UNK] [CLS] [SEP] [MASK], then the corpus words in sorted order.
    public static var tokens: [String] {
        var words = Set<String>()
        for t in synthSentimentTemplates + synthNeutralTemplates {
            for w in t.split(separator: " ") where w != "W" { words.insert(String(w)) }
        }
        for (w, _) in synthLexicon { words.insert(w) }
        return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words.sorted()
    }

    public static func write(to path: String) throws {
        try (tokens.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}
