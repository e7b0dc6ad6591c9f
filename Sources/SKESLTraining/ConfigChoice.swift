// A closed set of values in a config file (train.allreduce, train.selection.loss, …):
// an enum whose raw strings are what the file holds, so the file reads and writes the
// same text as a String did, while the code switches over cases the compiler checks.
// Decoding an unknown value fails with the choices in the message, which
// RunConfigLoader.describe turns into "KEY must be A, B or C (got X)".
import Foundation
import SKESLDistributed

public protocol ConfigChoice: RawRepresentable, CaseIterable, Codable, Sendable where RawValue == String {}

extension ConfigChoice {
    /// "a, b or c", in declaration order.
    public static var choices: String {
        let names = allCases.map(\.rawValue)
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let v = Self(rawValue: s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: ConfigChoiceMessage.prefix + "\(Self.choices) (got \(s))"))
        }
        self = v
    }
}

enum ConfigChoiceMessage {
    /// Marks a ConfigChoice decoding failure so that the key and the message read as one phrase.
    static let prefix = "must be "
}

/// How the gradient all-reduce progresses (train.allreduce; docs/cluster.md).
extension GradientReducer.Progress: ConfigChoice {}

extension SelectionConfig {
/// The validation loss that picks the best epoch (train.selection.loss; Selection.swift).
public enum Loss: String, ConfigChoice {
    /// The per-sample MAE (skesl's default).
    case sampleMean = "sample_mean"
    /// The released code's valid_epoch: the mean over batches of each batch's mean L1 loss.
    case batchMean = "batch_mean"
}
}

extension DataConfig {
/// How lexicon lines are read (data.lexiconRule; ModelSetup.lexiconRule).
public enum LexiconRule: String, ConfigChoice {
    /// `reference` exactly when data.lexicon is "reference", else `vader`.
    case auto
    /// Tab-separated, as vaderSentiment reads it.
    case vader
    /// Whitespace-separated, as the released code's load_lexicon.
    case reference
}
}

/// How a run ended: the `status` of the metrics log's run_end record, of the
/// SKESL_STATUS_FILE, of RunSummary and of the CLI's last line.
public enum RunStatus: String, Codable, Sendable, CaseIterable {
    /// Every epoch ran.
    case completed
    /// train.maxSteps reached.
    case maxSteps = "max_steps"
    /// The caller's step limit for this run reached (Trainer.run(stopAfterSteps:)).
    case stopped
    /// A stop signal (SIGTERM, SIGUSR1, SIGINT) ended the run after a checkpoint.
    case interrupted
    /// An error ended the run (written by rank 0 before it rethrows).
    case failed
}

/// Why a checkpoint file was written: the `reason` of the metrics log's checkpoint record.
public enum CheckpointReason: String, Codable, Sendable, CaseIterable {
    /// The end of an epoch.
    case epoch
    /// checkpoint.everySteps.
    case interval
    /// The end of a run that ran every epoch.
    case final
    /// The end of a run stopped by train.maxSteps, by a caller's step limit, or by a stop signal.
    case maxSteps = "max_steps", stopped, interrupted
    /// Copies of an epoch's checkpoint: the lowest validation loss so far, a milestone epoch.
    case best, milestone

    /// The copy a file name stands for (best.h5, or a milestone).
    public init(copy path: String) {
        self = (path as NSString).lastPathComponent == "best.h5" ? .best : .milestone
    }

    /// The checkpoint written when a run ends with `status` (a failed run throws before it).
    public init(endOf status: RunStatus) {
        switch status {
        case .completed: self = .final
        case .maxSteps: self = .maxSteps
        case .stopped: self = .stopped
        case .interrupted, .failed: self = .interrupted
        }
    }
}
