// `skesl tokenize`: transcripts on standard input, one JSON object per line out;
// with --lexicon, sentiment word masking as in pretraining.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLText

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize transcripts (one per line on standard input) into BERT ids, optionally with sentiment word masking.",
        discussion: """
        Writes one JSON object per input line: input_ids, token_type_ids, attention_mask. With --lexicon the ids \
        are masked as in pretraining and each object adds mask_position (0-based index into input_ids, [CLS] is 0) \
        and target; the line's 0-based number is its sample id.

        Examples:
          echo "the movie was great" | \\
            skesl tokenize --tokenizer bert-base-uncased --max-length 16
          skesl tokenize --tokenizer bert-base-uncased --lexicon vader \\
            < transcripts.txt > masked.jsonl
        """)

    @Option(help: "A model directory, a vocab.txt or a Hugging Face tokenizer.json.")
    var tokenizer: String

    @Option(help: "Sequence length with [CLS] and [SEP].")
    var maxLength: Int = 39

    @Flag(help: "Keep case and accents (a vocab.txt without tokenizer_config.json; tokenizer.json says this itself).")
    var cased = false

    @Option(help: "VADER lexicon file (vader_lexicon.txt), `vader` for the one the project's venv holds, or `reference` for the released SKESL code's (read by its rule, docs/text.md); turns on masking.")
    var lexicon: String?

    @Flag(help: "A windowed sample's attention mask is all ones, as the released code gives it (docs/text.md, reference quirks).")
    var windowAttendsPadding = false

    @Option(help: "Seed of the random mask positions.")
    var seed: UInt64 = 0

    @Option(help: "Epoch of the random mask positions.")
    var epoch: UInt64 = 0

    func validate() throws {
        guard maxLength >= (lexicon == nil ? 2 : 3) else {
            throw ValidationError("--max-length must be at least \(lexicon == nil ? 2 : 3) (room for [CLS], [SEP]\(lexicon == nil ? "" : " and a mask"))")
        }
    }

    func run() throws {
        let tok = try BertTokenizer.load(tokenizer, options: cased ? .cased : .uncased)
        var masker: SentimentMasker? = nil
        if let l = lexicon {
            let named = !FileManager.default.fileExists(atPath: l)
            let lex: VaderLexicon
            if named && l == "reference" {
                lex = try VaderLexicon.load(try VaderLexicon.locateReference(), rule: .reference)
            } else {
                lex = try VaderLexicon.load(named && l == "vader" ? try VaderLexicon.locateDefault() : l)
            }
            masker = try SentimentMasker(tokenizer: tok, lexicon: lex, maxLength: maxLength, windowAttendsPadding: windowAttendsPadding)
        }
        var out = ""
        out.reserveCapacity(1 << 16)
        var sample: UInt64 = 0
        while let line = readLine(strippingNewline: true) {
            if let m = masker {
                let s = m.mask(text: line, seed: seed, epoch: epoch, sample: sample)
                append(s.encoding, to: &out)
                out += ",\"mask_position\":\(s.maskPosition),\"target\":\(s.target)}\n"
            } else {
                append(tok.encode(line, maxLength: maxLength), to: &out)
                out += "}\n"
            }
            sample += 1
            if out.utf8.count > 60_000 { FileHandle.standardOutput.write(out.data(using: .utf8)!); out = "" }
        }
        FileHandle.standardOutput.write(out.data(using: .utf8)!)
    }

    private func append(_ e: Encoding, to out: inout String) {
        func list(_ v: [Int32]) -> String { "[" + v.map(String.init).joined(separator: ",") + "]" }
        out += "{\"input_ids\":\(list(e.inputIds)),\"token_type_ids\":\(list(e.tokenTypeIds)),\"attention_mask\":\(list(e.attentionMask))"
    }
}
