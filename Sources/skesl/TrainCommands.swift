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

    /// The config file, then the typed flags (as typed values, never re-read as YAML), then
    /// --set, which wins.
    func load(task: RunTask, extra: [RunConfigLoader.Setting] = []) throws -> RunConfig {
        typealias S = RunConfigLoader.Setting
        var settings = [S("task", task.rawValue, flag: "the \(task.rawValue) command")]
        if let v = store { settings.append(S("data.store", v, flag: "--store")) }
        if let v = runDir { settings.append(S("runDir", v, flag: "--run-dir")) }
        if let v = epochs { settings.append(S("train.epochs", v, flag: "--epochs")) }
        if let v = maxSteps { settings.append(S("train.maxSteps", v, flag: "--max-steps")) }
        if let v = batch { settings.append(S("train.globalBatch", v, flag: "--batch")) }
        if let v = microBatches { settings.append(S("train.microBatches", v, flag: "--micro-batches")) }
        if let v = seed { settings.append(S("train.seed", v, flag: "--seed")) }
        if let v = threads { settings.append(S("train.threads", v, flag: "--threads")) }
        if let v = initBert { settings.append(S("initialize.bert", v, flag: "--init-bert")) }
        if let v = tokenizer { settings.append(S("data.tokenizer", v, flag: "--tokenizer")) }
        if let v = lexicon { settings.append(S("data.lexicon", v, flag: "--lexicon")) }
        if skipBadSamples { settings.append(S("data.skipBadSamples", true, flag: "--skip-bad-samples")) }
        return try RunConfigLoader.load(path: config, settings: settings + extra, overrides: overrides)
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
        var extra: [RunConfigLoader.Setting] = []
        if let c = initCheckpoint { extra.append(.init("initialize.checkpoint", c, flag: "--init-checkpoint")) }
        if let v = variant { extra.append(.init("variant", v.rawValue, flag: "--variant")) }
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
