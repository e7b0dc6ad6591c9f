// `skesl evaluate`: a checkpoint's metrics on a split; and the options it shares with
// `skesl predict` (InferenceOptions).
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLModel
import SKESLStore
import SKESLTraining
import SKESLLog

/// What evaluate and predict read: a checkpoint, a store, and how to tokenize.
struct InferenceOptions: ParsableArguments {
    @Option(help: "Fine-tuned checkpoint or weights file.") var checkpoint: String
    @Option(help: "Labeled feature store.") var store: String
    @Option(help: "Tokenizer (default: the one the checkpoint's run used, from its stored config).") var tokenizer: String?
    @Option(name: .shortAndLong, help: "Run config the checkpoint was trained with (for the tokenizer and text length).") var config: String?
    @Option(help: "Compute threads per rank (default: train.threads or OPENBLAS_NUM_THREADS where set, else the CPUs this rank may use, shared among the ranks on its host).")
    var threads: Int?

    /// Loads the checkpoint's model and the text pipeline it needs.
    func context(_ comm: Communicator) throws -> Trainer.EvaluationContext {
        typealias S = RunConfigLoader.Setting
        var settings = [S("task", "finetune", flag: "evaluation"), S("data.store", store, flag: "--store"),
                        S("initialize.checkpoint", checkpoint, flag: "--checkpoint")]
        if let t = tokenizer { settings.append(S("data.tokenizer", t, flag: "--tokenizer")) }
        if let n = threads { settings.append(S("train.threads", "\(n)", flag: "--threads")) }
        let rc = try RunConfigLoader.load(path: config, settings: settings)
        let ctx = try Trainer.inferenceContext(checkpoint: checkpoint, config: rc, comm: comm)
        if comm.rank == 0 { Log.info("threads: \(ctx.threads) per rank (\(ctx.threadsWhy))") }
        return ctx
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Metrics of a checkpoint on a labeled split: MAE, Corr, Acc-2/F1 (has-0, non-0), Acc-7, Acc-5.",
        discussion: "Example: skesl evaluate --checkpoint runs/ft/checkpoints/best.h5 --store data/mosi --split test --json metrics.json")
    @OptionGroup var input: InferenceOptions
    @Option(help: "Split(s) to evaluate.") var split: [String] = ["test"]
    @Option(help: "Also write the metrics as JSON to this file.") var json: String?
    func run() throws {
        try withWorld { comm in
            let ctx = try input.context(comm)
            var rows: [(String, RegressionMetrics)] = []
            var out: [String: Any] = [:]
            for s in split {
                let e = try ctx.evaluate(split: s)
                guard let m = e.metrics else { throw ConfigError("\(input.store): split \(s) has no samples (or non-finite predictions)") }
                rows.append((s, m))
                out[s] = try JSONSerialization.jsonObject(with: Data(m.jsonString().utf8))
            }
            if comm.rank == 0 {
                print(MetricsTable.render(rows))
                if let j = json {
                    let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
                    try data.write(to: URL(fileURLWithPath: j))
                }
            }
        }
    }
}
