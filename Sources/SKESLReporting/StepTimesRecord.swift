// The step-time vocabulary shared by the timer (SKESLTraining/StepTimer.swift), the
// metrics log's "step_times" record and the HTML report: the parts of a step, and the
// per-rank summary of a run (docs/metrics-log.md).
import Foundation

/// Seconds of one step (or a mean over steps) by phase.
public struct StepBreakdown: Equatable, Sendable {
    public static let partNames = ["data", "forward", "backward", "imbalance", "allreduce", "optimizer", "other"]
    /// Loader wait and text batch preparation, forward, backward (gradient hooks included),
    /// waiting for the slowest rank, the gradient all-reduce that backward did not hide
    /// (plus the step's small stats all-reduce), the optimiser update, everything else.
    public var values = [Double](repeating: 0, count: StepBreakdown.partNames.count)
    public init() {}
    public var total: Double { values.reduce(0, +) }
    public subscript(_ name: String) -> Double { values[StepBreakdown.partNames.firstIndex(of: name)!] }
}

/// "step_times": where the step time went on each rank over a run, summarised across ranks.
public struct StepTimesRecord: Codable, Equatable, Sendable {
    public struct Spread: Codable, Equatable, Sendable { public var min, median, max: Double }
    public var time: Double
    public var steps: Int                       // steps this run on rank 0
    public var worldSize: Int
    /// "barrier" (train.diagnoseImbalance: measured) or "estimate" (from the ranks' ready times).
    public var imbalance: String
    /// Mean seconds per step of each part: min, median, max over the ranks.
    public var parts: [String: Spread]
    /// Mean seconds per step of each part, one entry per rank.
    public var ranks: [String: [Double]]
    /// Mean step wall time per rank, and its spread.
    public var stepSeconds: Spread

    enum CodingKeys: String, CodingKey {
        case time, steps, worldSize = "world_size", imbalance, parts, ranks, stepSeconds = "step_s"
    }

    static func spread(_ v: [Double]) -> Spread {
        let s = v.sorted()
        // The median of an even count is the mean of the middle two.
        let med = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        return Spread(min: s.first ?? 0, median: med, max: s.last ?? 0)
    }

    public static func make(perRank: [[Double]], steps: [Int], diagnose: Bool, time: Double) -> StepTimesRecord {
        var parts: [String: Spread] = [:], ranks: [String: [Double]] = [:]
        for (i, n) in StepBreakdown.partNames.enumerated() {
            let v = perRank.map { $0[i] }
            ranks[n] = v
            parts[n] = spread(v)
        }
        return StepTimesRecord(time: time, steps: steps.first ?? 0, worldSize: perRank.count,
                               imbalance: diagnose ? "barrier" : "estimate", parts: parts, ranks: ranks,
                               stepSeconds: spread(perRank.map { $0.reduce(0, +) }))
    }

    /// The table printed at the end of a run.
    public var text: String {
        var s = String(format: "step time by part, mean per step over %d steps (min / median / max over %d rank%@; imbalance %@):\n",
                       steps, worldSize, worldSize == 1 ? "" : "s", imbalance == "barrier" ? "measured with a barrier" : "estimated")
        let med = max(stepSeconds.median, 1e-12)
        for n in StepBreakdown.partNames {
            let p = parts[n]!
            s += "  " + n.padding(toLength: 10, withPad: " ", startingAt: 0)
                + String(format: "%9.2f %9.2f %9.2f ms  %5.1f%%\n", 1e3 * p.min, 1e3 * p.median, 1e3 * p.max, 100 * p.median / med)
        }
        s += "  " + "step".padding(toLength: 10, withPad: " ", startingAt: 0)
            + String(format: "%9.2f %9.2f %9.2f ms", 1e3 * stepSeconds.min, 1e3 * stepSeconds.median, 1e3 * stepSeconds.max)
        return s
    }
}
