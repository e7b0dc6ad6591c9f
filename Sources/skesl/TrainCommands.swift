// `skesl pretrain` and `skesl finetune`: the training commands and the options they share.
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

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Self-supervised pretraining: sentiment word masking on an unlabeled store (method sections 1-5).",
        discussion: """
        One process, or N MPI ranks that split each global batch. Checkpoints go to \
        <runDir>/checkpoints; a run resumes from its newest complete checkpoint by default \
        (--resume auto).

        Examples:
          skesl pretrain -c Configs/pretrain-reference.yaml --store /data/voxceleb \\
            --init-bert /models/bert-base-uncased
          mpirun -np 2 skesl pretrain -c Configs/pretrain-small.yaml \\
            --store data/synth --run-dir runs/pre
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
        --init-checkpoint takes a pretraining checkpoint (BERT and cross-modal encoder; the \
        head starts fresh); give the BERT it was pretrained with (--init-bert) or --tokenizer \
        too, for the vocabulary. Without it the encoder starts from scratch (the paper's \
        "no pretraining" ablation); --variant text_only is the text-only ablation.

        Example:
          skesl finetune -c Configs/finetune-mosi.yaml --store data/mosi \\
            --init-bert bert-base-uncased.h5 \\
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
