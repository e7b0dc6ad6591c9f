// The words a run records about how it ended and why it wrote a checkpoint: the metrics
// log's run_end and checkpoint records (docs/metrics-log.md), SKESL_STATUS_FILE
// (Cluster/slurm.sbatch reads it) and the CLI's last line. Enums so that every writer
// uses the same words; the raw strings are what the files hold.
import Foundation

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
