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
    /// Whether each rank's training thread kept its CPU while it computed (absent in logs
    /// written before it was measured).
    public var cpu: CPUUse?
    /// What the run lost its scaling to, in one line (StepDiagnosis.swift); absent in logs
    /// written before it was made.
    public var diagnosis: String?

    enum CodingKeys: String, CodingKey {
        case time, steps, worldSize = "world_size", imbalance, parts, ranks, stepSeconds = "step_s", cpu, diagnosis
    }

    /// What the CPU did for each rank, to tell a rank that computes slowly because it lost its
    /// CPU (preempted by its own loader or communication thread, another process, the system)
    /// from one whose CPU computes slowly (a busy hyperthread sibling, shared memory bandwidth,
    /// a lower clock with every core busy): the first holds its CPU less than all the time in
    /// forward and backward, the second holds it all the time and still takes longer.
    public struct CPUUse: Codable, Equatable, Sendable {
        /// The training thread's CPU time in forward and backward over their wall time (1 = it
        /// ran all the time; CPU time on a hyperthread counts as running).
        public var computeOnCPU: Spread
        /// Involuntary context switches of the training thread in forward and backward, per step.
        public var preemptions: Spread
        /// CPU seconds per step that the rank's other threads (the loader, the communication
        /// thread, BLAS threads beyond the first) ran while the training thread was in forward
        /// and backward: on a rank bound to one CPU, time they may have taken from it.
        public var otherThreads: Spread
        /// Seconds per step that the rank's control group was held back by its CPU quota (all its
        /// threads stopped until the next period; CPUQuota). Absent where no rank has a quota.
        public var throttled: Spread?
        /// Each of the above per rank, indexed by rank (throttled_s only where measured).
        public var ranks: [String: [Double]]
        public static let names = ["compute_on_cpu", "preemptions", "other_threads_s", "throttled_s"]

        enum CodingKeys: String, CodingKey {
            case computeOnCPU = "compute_on_cpu", preemptions, otherThreads = "other_threads_s", throttled = "throttled_s", ranks
        }
    }

    static func spread(_ v: [Double]) -> Spread {
        let s = v.sorted()
        // The median of an even count is the mean of the middle two.
        let med = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        return Spread(min: s.first ?? 0, median: med, max: s.last ?? 0)
    }

    /// `perRank`: each rank's mean seconds per step by part (StepBreakdown's order).
    /// `cpuPerRank`: each rank's mean per step of [training thread's CPU seconds in forward and
    /// backward, its involuntary context switches there, the other threads' CPU seconds there,
    /// optionally the seconds its control group was throttled over the whole step (NaN: no quota)].
    public static func make(perRank: [[Double]], cpuPerRank: [[Double]]? = nil, steps: [Int], diagnose: Bool,
                            time: Double) -> StepTimesRecord {
        var parts: [String: Spread] = [:], ranks: [String: [Double]] = [:]
        for (i, n) in StepBreakdown.partNames.enumerated() {
            let v = perRank.map { $0[i] }
            ranks[n] = v
            parts[n] = spread(v)
        }
        var cpu: CPUUse?
        if let c = cpuPerRank, c.count == perRank.count {
            let fwd = StepBreakdown.partNames.firstIndex(of: "forward")!, bwd = StepBreakdown.partNames.firstIndex(of: "backward")!
            // A rank that computed nothing (no steps) held its CPU for all of no time.
            let onCPU = zip(c, perRank).map { cpu, wall in wall[fwd] + wall[bwd] > 0 ? cpu[0] / (wall[fwd] + wall[bwd]) : 1 }
            var byName = [onCPU, c.map { $0[1] }, c.map { $0[2] }]
            // Throttling where some rank's group has a quota; a rank without one was never held back.
            let throttled = c.map { $0.count > 3 ? $0[3] : .nan }
            if throttled.contains(where: { !$0.isNaN }) { byName.append(throttled.map { $0.isNaN ? 0 : $0 }) }
            cpu = CPUUse(computeOnCPU: spread(byName[0]), preemptions: spread(byName[1]), otherThreads: spread(byName[2]),
                         throttled: byName.count > 3 ? spread(byName[3]) : nil,
                         ranks: Dictionary(uniqueKeysWithValues: zip(CPUUse.names, byName).map { ($0, $1) }))
        }
        return StepTimesRecord(time: time, steps: steps.first ?? 0, worldSize: perRank.count,
                               imbalance: diagnose ? "barrier" : "estimate", parts: parts, ranks: ranks,
                               stepSeconds: spread(perRank.map { $0.reduce(0, +) }), cpu: cpu)
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
        if let c = cpu { s += "\n" + c.text }
        if let d = diagnosis { s += "\n  diagnosis: " + d }
        return s
    }
}

extension StepTimesRecord.CPUUse {
    /// Two lines under the step-time table, min / median / max over the ranks.
    public var text: String {
        let a = computeOnCPU, b = preemptions, c = otherThreads
        return String(format: "  CPU: training thread on its CPU in forward + backward %.1f%% / %.1f%% / %.1f%% of the time,\n", 100 * a.min, 100 * a.median, 100 * a.max)
            + String(format: "       preempted there %.1f / %.1f / %.1f times per step, while its other threads ran %.1f / %.1f / %.1f ms per step",
                     b.min, b.median, b.max, 1e3 * c.min, 1e3 * c.median, 1e3 * c.max)
            + (throttled.map { t in
                String(format: "\n       its control group held back by its CPU quota %.1f / %.1f / %.1f ms per step", 1e3 * t.min, 1e3 * t.median, 1e3 * t.max)
            } ?? "")
    }
}
