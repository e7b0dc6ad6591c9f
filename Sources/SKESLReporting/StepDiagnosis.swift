// One line that says what a run lost its scaling to, from the step-time record and the
// placement report (docs/scaling.md, "Why a rank is slow"). The step table gives every
// figure; a 16-rank run of many parts needs the reading of them too: whether the ranks
// waited for a slow one or for the sum, which rank was slow, in which part of its step, and
// what its CPU readings say about why. The rules are the table in docs/scaling.md:
// - the slowest rank is the one with the least imbalance (the others wait for it), and the
//   part of its step furthest above the other ranks' median is where it lost its time;
// - in forward + backward: a control group's quota when its throttled time covers the loss;
//   its own threads when they ran about as long as it lost its CPU; something outside it
//   when it lost its CPU otherwise; a hyperthread sibling rank when it kept its CPU but shares
//   a core; else the CPU itself computed slower.
import Foundation

extension StepTimesRecord {
    /// Thresholds for naming a loss: waiting for the slowest rank, the all-reduce proper (issue
    /// 11's target: at most 3% of the step), a CPU quota's held-back time; a rank below
    /// `keptCPU` of its forward + backward on CPU lost it.
    static let imbalanceWorth = 0.05, allreduceWorth = 0.03, throttledWorth = 0.05, keptCPU = 0.95

    /// What the run lost its scaling to, in one line; nil for one rank without a quota's loss.
    public func diagnosis(placement: PlacementReport? = nil) -> String? {
        let step = max(stepSeconds.median, 1e-12)
        let imbalance = (parts["imbalance"]?.median ?? 0) / step, allreduce = (parts["allreduce"]?.median ?? 0) / step
        var found: [String] = []
        if let t = cpu?.throttled, t.median / step >= Self.throttledWorth {
            found.append(String(format: "the control group's CPU quota held the ranks back %.0f%% of the step (%.0f ms per step): fewer ranks or threads, "
                                + "or a larger quota (docs/scaling.md, \"A CPU quota\")", 100 * t.median / step, 1e3 * t.median))
        }
        if worldSize > 1 {
            if imbalance < Self.imbalanceWorth && allreduce < Self.allreduceWorth {
                found.append(String(format: "the ranks kept pace: %.1f%% of the step waiting for the slowest rank, %.1f%% in the all-reduce proper",
                                    100 * imbalance, 100 * allreduce))
            }
            if imbalance >= Self.imbalanceWorth, let s = slowestRank(placement: placement) {
                found.append(String(format: "%.1f%% of the step waiting for the slowest rank, ", 100 * imbalance) + s)
            }
            if allreduce >= Self.allreduceWorth {
                found.append(String(format: "the all-reduce proper took %.1f%% of the step: the sum itself is slow (skesl bench-sum times it alone; "
                                    + "train.allreduce=shm sums in host memory)", 100 * allreduce))
            }
        }
        return found.isEmpty ? nil : found.joined(separator: "; ")
    }

    /// Which rank the others waited for, where its step lost the time, and why.
    func slowestRank(placement: PlacementReport?) -> String? {
        let n = worldSize
        func v(_ part: String, _ r: Int) -> Double { ranks[part].flatMap { $0.count == n ? $0[r] : nil } ?? 0 }
        guard n > 1, ranks["imbalance"]?.count == n else { return nil }
        func compute(_ r: Int) -> Double { v("forward", r) + v("backward", r) }
        // The least imbalance; of equals, the longest compute.
        let slow = (0..<n).min { a, b in v("imbalance", a) != v("imbalance", b) ? v("imbalance", a) < v("imbalance", b) : compute(a) > compute(b) }!
        // Against the other ranks (with two ranks, the other one).
        func median(_ f: (Int) -> Double) -> Double { Self.spread((0..<n).filter { $0 != slow }.map(f)).median }
        let candidates: [(name: String, mine: Double, typical: Double)] = [
            ("forward + backward", compute(slow), median(compute)),
            ("data wait", v("data", slow), median { v("data", $0) }),
            ("optimizer", v("optimizer", slow), median { v("optimizer", $0) }),
            ("other (logging, checkpoints, evaluation, a planted delay)", v("other", slow), median { v("other", $0) }),
        ]
        let worst = candidates.max { ($0.mine - $0.typical) < ($1.mine - $1.typical) }!
        var s = String(format: "rank %d: its %@ took %.0f ms per step against the other ranks' median of %.0f ms",
                       slow, worst.name, 1e3 * worst.mine, 1e3 * worst.typical)
        guard worst.name == "forward + backward" else { return s }
        // Why it computed longer, from its CPU readings.
        guard let c = cpu, let on = c.ranks["compute_on_cpu"], on.count == n else { return s }
        func cpuFigure(_ name: String) -> Double { c.ranks[name].flatMap { $0.count == n ? $0[slow] : nil } ?? 0 }
        let lost = (1 - on[slow]) * compute(slow), others = cpuFigure("other_threads_s"), throttled = cpuFigure("throttled_s")
        s += String(format: "; it was on its CPU %.0f%% of that time", 100 * on[slow])
        if on[slow] < Self.keptCPU {
            s += String(format: ", preempted %.0f times per step", cpuFigure("preemptions"))
            if throttled > 0 && throttled >= 0.5 * lost {
                s += String(format: ": its control group's CPU quota held it back %.0f ms per step", 1e3 * throttled)
            } else if others >= 0.5 * lost {
                s += String(format: ": its own other threads (loader, communication, BLAS helpers) ran %.0f ms meanwhile; give each rank a CPU more, or run fewer ranks",
                            1e3 * others)
            } else {
                s += ": something outside the rank took its CPU (another rank or process bound to it, an unbound process, the system)"
            }
        } else if let siblings = placement?.sharedCores.filter({ $0.contains(slow) }).flatMap({ $0 }).filter({ $0 != slow }), !siblings.isEmpty {
            s += ", but it shares a physical core with rank " + siblings.map(String.init).joined(separator: ", ") + " (hyperthread siblings)"
        } else {
            s += ": the CPU itself computed slower (clock speed with every core busy, memory bandwidth, caches)"
        }
        return s
    }
}
