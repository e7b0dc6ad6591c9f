// `skesl predict`: a checkpoint's predictions on a split, one line per utterance.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLModel
import SKESLStore
import SKESLTraining

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-utterance predictions of a checkpoint on a store split, as CSV or JSON lines.",
        discussion: "Example: skesl predict --checkpoint runs/ft/checkpoints/best.h5 --store data/mosi --split test --output preds.csv")
    @OptionGroup var input: InferenceOptions
    @Option(help: "Split.") var split = "test"
    @Option(help: "Output file: .csv or .jsonl (default: CSV on standard output).") var output: String?
    func run() throws {
        try withWorld { comm in
            let ctx = try input.context(comm)
            let e = try ctx.evaluate(split: split)
            guard comm.rank == 0 else { return }
            let names = e.utterances
            let jsonl = output?.hasSuffix(".jsonl") ?? false
            var text = jsonl ? "" : "utterance_id,global_id,prediction,label\n"
            for i in 0..<e.predictions.count {
                if jsonl {
                    let obj: [String: Any] = ["utterance_id": names[i], "global_id": e.ids[i], "prediction": Double(e.predictions[i]), "label": Double(e.labels[i])]
                    text += String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self) + "\n"
                } else {
                    let q = names[i].contains(",") || names[i].contains("\"") ? "\"" + names[i].replacingOccurrences(of: "\"", with: "\"\"") + "\"" : names[i]
                    text += "\(q),\(e.ids[i]),\(e.predictions[i]),\(e.labels[i])\n"
                }
            }
            if let o = output { try text.write(toFile: o, atomically: true, encoding: .utf8) } else { print(text, terminator: "") }
        }
    }
}
