// A run's metrics log folded into what the report shows: training intervals, per-epoch
// evaluations per split, checkpoints, and the best epoch.
// A resumed run repeats steps and epochs that were logged before the crash; the later
// record wins (a train record whose step is not past the last kept one drops the kept
// records from that step on; an eval replaces the same split and epoch).
import Foundation

public struct RunReportData {
    public var runStart: RunStartRecord?
    public var resumes: [RunStartRecord] = []
    public var runEnd: RunEndRecord?
    public var train: [TrainRecord] = []
    /// split -> epoch -> evaluation.
    public var evals: [String: [Int: EvalRecord]] = [:]
    public var checkpoints: [CheckpointRecord] = []
    public var warnings: [String]
    /// Kinds this version does not know, with their counts (shown, not interpreted).
    public var unknownKinds: [String: Int] = [:]
    /// The last run's (or resumed run's) step-time summary.
    public var stepTimes: StepTimesRecord?

    public init(records: [MetricsRecord], warnings: [String] = []) {
        self.warnings = warnings
        for r in records {
            switch r {
            case .runStart(let s):
                if runStart == nil { runStart = s } else { resumes.append(s) }
            case .train(let t):
                if let last = train.last, t.step <= last.step {
                    train.removeAll { $0.step >= t.step }
                }
                train.append(t)
            case .eval(let e):
                evals[e.split, default: [:]][e.epoch] = e
            case .checkpoint(let c):
                checkpoints.append(c)
            case .runEnd(let e):
                runEnd = e
            case .stepTimes(let t):
                stepTimes = t
            case .unknown(let k):
                unknownKinds[k, default: 0] += 1
            }
        }
    }

    /// Splits with evaluations: valid and test first, then the others by name.
    public var splits: [String] {
        let order = ["valid": 0, "test": 1]
        return evals.keys.sorted { (order[$0] ?? 2, $0) < (order[$1] ?? 2, $1) }
    }

    /// Every epoch that has a training interval or an evaluation.
    public var epochs: [Int] {
        Array(Set(train.map(\.epoch)).union(evals.values.flatMap(\.keys))).sorted()
    }

    /// Evaluations of a split, by epoch.
    public func series(split: String) -> [EvalRecord] {
        (evals[split] ?? [:]).values.sorted { $0.epoch < $1.epoch }
    }

    /// Mean training loss per sample over each epoch's logged intervals.
    public func trainLossPerEpoch() -> [(epoch: Int, loss: Double)] {
        var sums: [Int: (loss: Double, samples: Int)] = [:]
        for t in train where t.samples > 0 {
            sums[t.epoch, default: (0, 0)].loss += t.loss * Double(t.samples)
            sums[t.epoch, default: (0, 0)].samples += t.samples
        }
        return sums.keys.sorted().map { ($0, sums[$0]!.loss / Double(sums[$0]!.samples)) }
    }

    /// The epoch whose test metrics are reported: the trainer's choice from run_end when it
    /// has a validation record, else the epoch with the lowest validation loss (the first on
    /// ties), as the method's recipe keeps.
    public var bestEpoch: Int? {
        if let b = runEnd?.bestEpoch, evals["valid"]?[b] != nil { return b }
        return series(split: "valid").filter { $0.loss.isFinite }
            .min { ($0.loss, $0.epoch) < ($1.loss, $1.epoch) }?.epoch
    }

    /// The evaluations the final metrics table shows: every split at the best epoch, then the
    /// test split at the last epoch when that differs; without a best epoch, the last
    /// evaluation of the first split.
    public func finalColumns() -> [(String, EvalRecord)] {
        var columns: [(String, EvalRecord)] = []
        if let best = bestEpoch {
            for split in splits { if let e = evals[split]?[best] { columns.append(("\(split) @ epoch \(best)", e)) } }
        }
        if let lastTest = series(split: "test").last, lastTest.epoch != bestEpoch {
            columns.append(("test @ last epoch \(lastTest.epoch)", lastTest))
        }
        if columns.isEmpty, let split = splits.first, let last = series(split: split).last {
            columns.append(("\(split) @ last epoch \(last.epoch)", last))
        }
        return columns
    }

    /// Wall seconds the run took: from run_end, else first to last record time.
    public var elapsedSeconds: Double? {
        if let e = runEnd?.elapsedSeconds { return e }
        let times = train.map(\.time) + evals.values.flatMap { $0.values.map(\.time) } + checkpoints.map(\.time)
        guard let start = runStart?.time, let end = times.max() else { return nil }
        return end - start
    }

    /// Total skipped samples over the kept training intervals.
    public var skippedSamples: Int { train.reduce(0) { $0 + $1.skipped } }
}
