// `skesl pretrain`, `skesl finetune`, `skesl evaluate`, `skesl predict`.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLModel
import SKESLStore
import SKESLTraining

/// Options shared by the training commands: a config file, then flags that override it.
struct RunOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Run configuration (YAML or JSON), e.g. Configs/pretrain-reference.yaml.")
    var config: String?
    @Option(help: "Feature store directory (data.store).") var store: String?
    @Option(help: "Run directory: metrics.jsonl, config.yaml, checkpoints/ (runDir).") var runDir: String?
    @Option(help: "Epochs (train.epochs).") var epochs: Int?
    @Option(help: "Stop after this many optimiser steps in total (train.maxSteps).") var maxSteps: Int?
    @Option(help: "Global batch size over all ranks (train.globalBatch).") var batch: Int?
    @Option(help: "Micro-batches per rank per step, for memory (train.microBatches).") var microBatches: Int?
    @Option(help: "Seed of every random draw (train.seed).") var seed: UInt64?
    @Option(help: "OpenBLAS threads per rank (train.threads).") var threads: Int?
    @Option(help: "Pretrained BERT: Hugging Face directory or skesl weights file (initialize.bert).") var initBert: String?
    @Option(help: "Tokenizer: vocab.txt, tokenizer.json or model directory (data.tokenizer).") var tokenizer: String?
    @Option(help: "VADER lexicon file, auto (the venv's vaderSentiment) or reference (the released SKESL code's) (data.lexicon).") var lexicon: String?
    @Flag(help: "Skip and count unreadable samples instead of stopping (data.skipBadSamples).") var skipBadSamples = false
    @Option(name: .customLong("set"), help: "Override any config key, e.g. --set train.optimizer.lr=2e-4 (repeatable).")
    var overrides: [String] = []
    @Option(help: "Resume: auto (newest complete checkpoint of the run, if any), a checkpoint path, or none.")
    var resume: ResumeChoice = .auto

    func load(task: RunTask, extra: [String] = []) throws -> RunConfig {
        var o = ["task=\(task.rawValue)"]
        if let v = store { o.append("data.store=\(v)") }
        if let v = runDir { o.append("runDir=\(v)") }
        if let v = epochs { o.append("train.epochs=\(v)") }
        if let v = maxSteps { o.append("train.maxSteps=\(v)") }
        if let v = batch { o.append("train.globalBatch=\(v)") }
        if let v = microBatches { o.append("train.microBatches=\(v)") }
        if let v = seed { o.append("train.seed=\(v)") }
        if let v = threads { o.append("train.threads=\(v)") }
        if let v = initBert { o.append("initialize.bert=\(v)") }
        if let v = tokenizer { o.append("data.tokenizer=\(v)") }
        if let v = lexicon { o.append("data.lexicon=\(v)") }
        if skipBadSamples { o.append("data.skipBadSamples=true") }
        return try RunConfigLoader.load(path: config, overrides: o + extra + overrides)
    }
}

/// `--resume`: auto, none, or a checkpoint path (any other word).
enum ResumeChoice: ExpressibleByArgument, Equatable {
    case auto, none
    case path(String)

    init(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "none": self = .none
        default: self = .path(argument)
        }
    }
    var defaultValueDescription: String {
        switch self { case .auto: return "auto"; case .none: return "none"; case .path(let p): return p }
    }
    /// Trainer's `resume`: nil starts fresh; "auto" or a path resumes.
    var trainerArgument: String? {
        switch self { case .auto: return "auto"; case .none: return nil; case .path(let p): return p }
    }
}

extension Variant: ExpressibleByArgument {}

/// Runs `body` with the world communicator; any error ends the whole job with a clear
/// message (never a hang of the other ranks, never a crash trace).
func withWorld(_ body: (Communicator) throws -> Void) throws {
    let comm = try Communicator.world()
    do {
        try body(comm)
    } catch {
        if comm.size > 1 { comm.abort(code: 1, message: "\(error)") }
        throw CleanExit.message("\(error)")
    }
    try Communicator.finalize()
}

enum CleanExit: Error, CustomStringConvertible {
    case message(String)
    var description: String { if case .message(let m) = self { return m }; return "" }
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Self-supervised pretraining: sentiment word masking on an unlabeled store (method sections 1-5).",
        discussion: """
        One process, or N MPI ranks that split each global batch. Checkpoints go to <runDir>/checkpoints;
        a run resumes from its newest complete checkpoint by default (--resume auto).

        Examples:
          skesl pretrain -c Configs/pretrain-reference.yaml --store /data/voxceleb --init-bert /models/bert-base-uncased
          mpirun -np 2 skesl pretrain -c Configs/pretrain-small.yaml --store data/synth --run-dir runs/pre
        """)
    @OptionGroup var options: RunOptions
    func run() throws {
        StopSignal.install()
        let rc = try options.load(task: .pretrain)
        try withWorld { comm in
            let t = try Trainer(config: rc, comm: comm, resume: options.resume.trainerArgument)
            let s = try t.run()
            if comm.rank == 0 { print("pretrain \(s.status): \(s.steps) steps, final loss \(String(format: "%.4f", s.finalLoss)), checkpoint \(s.lastCheckpoint ?? "none")") }
        }
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tuning on a labeled store (CMU-MOSI / MOSEI), keeping the epoch with the best validation loss (method section 6).",
        discussion: """
        --init-checkpoint takes a pretraining checkpoint (BERT and cross-modal encoder; the head starts fresh); \
        give the BERT it was pretrained with (--init-bert) or --tokenizer too, for the vocabulary.
        Without it the encoder starts from scratch (the paper's "no pretraining" ablation); --variant text_only
        is the text-only ablation.

        Example:
          skesl finetune -c Configs/finetune-mosi.yaml --store data/mosi --init-bert bert-base-uncased.h5 \\
            --init-checkpoint runs/pre/checkpoints/milestone-epoch100.h5
        """)
    @OptionGroup var options: RunOptions
    @Option(help: "Pretraining checkpoint to start from (initialize.checkpoint).") var initCheckpoint: String?
    @Option(help: "full, or text_only (ablation).") var variant: Variant?
    func run() throws {
        StopSignal.install()
        var extra: [String] = []
        if let c = initCheckpoint { extra.append("initialize.checkpoint=\(c)") }
        if let v = variant { extra.append("variant=\(v.rawValue)") }
        let rc = try options.load(task: .finetune, extra: extra)
        try withWorld { comm in
            let t = try Trainer(config: rc, comm: comm, resume: options.resume.trainerArgument)
            let s = try t.run()
            if comm.rank == 0 {
                print("finetune \(s.status): \(s.steps) steps; best epoch \(s.bestEpoch + 1); best checkpoint \(rc.checkpointDir)/best.h5")
            }
        }
    }
}

/// What evaluate and predict read: a checkpoint, a store, and how to tokenize.
struct InferenceOptions: ParsableArguments {
    @Option(help: "Fine-tuned checkpoint or weights file.") var checkpoint: String
    @Option(help: "Labeled feature store.") var store: String
    @Option(help: "Tokenizer (default: the one the checkpoint's run used, from its stored config).") var tokenizer: String?
    @Option(name: .shortAndLong, help: "Run config the checkpoint was trained with (for the tokenizer and text length).") var config: String?

    /// Loads the checkpoint's model and the text pipeline it needs.
    func context(_ comm: Communicator) throws -> Trainer.EvaluationContext {
        var o = ["task=finetune", "data.store=\(store)"]
        if let t = tokenizer { o.append("data.tokenizer=\(t)") }
        o.append("initialize.checkpoint=\(checkpoint)")
        let rc = try RunConfigLoader.load(path: config, overrides: o)
        return try Trainer.inferenceContext(checkpoint: checkpoint, config: rc, comm: comm)
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
