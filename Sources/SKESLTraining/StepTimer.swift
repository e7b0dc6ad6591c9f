// Where each training step's time goes, on every rank (docs/metrics-log.md, "Step times").
//
// The trainer marks the end of each phase of a step (`lap`); the time since the previous
// mark goes to that phase, so the parts of a step add up to its wall time by construction
// and `other` (logging, checkpoints, evaluation) is whatever no phase claimed.
//
// A rank that finishes backward early waits in the gradient all-reduce for the slowest rank;
// from inside the reducer that wait looks like communication. To tell them apart:
// - by default, every rank's "ready time" (from the end of the previous step's
//   synchronising all-reduce to the end of its backward) rides along in the step's small
//   stats all-reduce (one slot per rank, so no extra collective); a rank's wait for the
//   slowest is then max(ready) − its own ready, and the rest of the gradient wait is the
//   all-reduce proper. This assumes the ranks leave the previous all-reduce together,
//   which they do to within its latency;
// - with `train.diagnoseImbalance`, a barrier before the gradient wait measures the
//   imbalance directly (what is left after it is the all-reduce proper). The barrier
//   costs one latency per step, so it is a diagnostic, not the default.
//
// Time says how long a rank computed, not why: a rank bound to one CPU also runs its loader
// and communication threads there, and may share a physical core with a hyperthread
// sibling. So the timer also reads, at each mark, the training thread's CPU time, its
// involuntary context switches and the whole process's CPU time, and sums them over forward
// and backward (StepTimesRecord.CPUUse says how to read them). Where the rank's control
// group has a CPU quota (CPUQuota), it also reads the time the group was held back by it over
// each whole step: a throttled group stops all its threads at once, wherever the step is.
import Foundation
import SKESLReporting
import SKESLDistributed
#if canImport(Glibc)
import Glibc
#endif

public final class StepTimer {
    public enum Part: Int { case data, forward, backward, imbalance, allreduce, optimizer, other, gradientWait }

    public let rank: Int
    public let worldSize: Int
    /// Barrier before the gradient wait (measured imbalance) instead of the estimate.
    public let diagnose: Bool
    public private(set) var steps = 0
    /// Sums over the steps of this run.
    public private(set) var totals = StepBreakdown()
    /// The last finished step.
    public private(set) var last = StepBreakdown()

    /// Straggler drill: `SKESL_FAULT_SLOW_MS=N` makes a rank sleep N ms at the start of each
    /// step (every rank, or only `SKESL_FAULT_SLOW_RANK`). The tests use it to check that
    /// other ranks report the wait as imbalance, not as all-reduce.
    static let slowMilliseconds: Int? = ProcessInfo.processInfo.environment["SKESL_FAULT_SLOW_MS"].flatMap { Int($0) }
    static let slowRank: Int? = ProcessInfo.processInfo.environment["SKESL_FAULT_SLOW_RANK"].flatMap { Int($0) }

    private let clock = MonotonicClock()
    private var mark = 0.0
    private var syncEnd: Double?
    private var current = StepBreakdown()
    private var gradientWait = 0.0
    private var ready = 0.0
    private var fd: Int32 = -1
    private var stepNumber = 0
    private var cpuMark = CPUSample()
    /// This step's and the run's sums over forward and backward: [the training thread's CPU
    /// seconds, its involuntary switches, the other threads' CPU seconds] (StepTimesRecord.make's
    /// cpuPerRank order).
    private var currentCPU = [0.0, 0.0, 0.0]
    private var totalsCPU = [0.0, 0.0, 0.0]
    /// The control group's CPU quota, its throttled seconds at the step's start, this step's and the run's.
    private let quota: CPUQuota?
    private var throttledMark = 0.0, currentThrottled = 0.0, totalThrottled = 0.0

    /// The training thread's CPU seconds and involuntary context switches, and the process's CPU seconds.
    struct CPUSample {
        var thread = 0.0, involuntary = 0, process = 0.0
        static func now() -> CPUSample {
            var ru = rusage(), ts = timespec()
            _ = getrusage(__rusage_who_t(1), &ru)            // RUSAGE_THREAD (Linux), not exported to Swift
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            let process = Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec)
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return CPUSample(thread: Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec), involuntary: ru.ru_nivcsw, process: process)
        }
    }

    /// `logDirectory`: where this rank appends one JSON line per step (rank-NNNNN.jsonl); nil for none.
    /// `quota`: the rank's CPU quota where the caller has read it already (its placement).
    /// With a communicator of several ranks, a barrier starts the clocks together (rank 0
    /// alone writes the run's header and measures sgemm before the first step).
    public init(rank: Int, worldSize: Int, diagnose: Bool, logDirectory: String? = nil, comm: Communicator? = nil,
                quota: CPUQuota? = CPUQuota.read()) throws {
        self.rank = rank; self.worldSize = worldSize; self.diagnose = diagnose; self.quota = quota
        defer { syncEnd = clock.now() }
        if let d = logDirectory {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            let p = d + String(format: "/rank-%05d.jsonl", rank)
            fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw TrainingError("\(p): cannot open the step-time log: \(String(cString: strerror(errno)))") }
        }
        if let c = comm, c.size > 1 { try c.barrier() }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// A step (number `step`, 1-based global) starts.
    public func begin(step: Int) {
        mark = clock.now()
        cpuMark = CPUSample.now(); currentCPU = [0, 0, 0]
        if let q = quota { throttledMark = q.throttledSeconds() ?? 0; currentThrottled = 0 }
        if syncEnd == nil { syncEnd = mark }
        current = StepBreakdown(); gradientWait = 0; stepNumber = step
        if let ms = StepTimer.slowMilliseconds, StepTimer.slowRank == nil || StepTimer.slowRank == rank {
            usleep(UInt32(ms * 1000))   // a planted straggler (tests): late with everything, counted as `other`
            lap(.other)
        }
    }

    /// The phase `part` ends now.
    public func lap(_ part: Part) {
        let t = clock.now()
        add(part, t - mark)
        mark = t
        let c = CPUSample.now()
        if part == .forward || part == .backward {
            currentCPU[0] += c.thread - cpuMark.thread
            currentCPU[1] += Double(c.involuntary - cpuMark.involuntary)
            currentCPU[2] += max(0, (c.process - cpuMark.process) - (c.thread - cpuMark.thread))
        }
        cpuMark = c
    }

    private func add(_ part: Part, _ dt: Double) {
        if part == .gradientWait { gradientWait += dt } else { current.values[part.rawValue] += dt }
    }

    /// Waits for the gradient all-reduce (`finish`); in diagnostic mode a barrier first.
    public func gradientWait(_ comm: Communicator, finish: () throws -> Void) throws {
        ready = clock.now() - (syncEnd ?? mark)
        if diagnose {
            lap(.other)
            try comm.barrier()
            lap(.imbalance)
            try finish()
            lap(.allreduce)
        } else {
            lap(.other)
            try finish()
            lap(.gradientWait)
        }
    }

    /// This rank's slots for the step's stats all-reduce (a sum): its ready time at its own index.
    public func readySlots() -> [Double] {
        var s = [Double](repeating: 0, count: worldSize)
        s[rank] = ready
        return s
    }

    /// After the stats all-reduce: `slots` are every rank's ready times (the last
    /// worldSize entries of the reduced vector). Splits the gradient wait.
    public func synced(_ reduced: [Double]) {
        lap(.allreduce)
        syncEnd = mark
        let slots = reduced.suffix(worldSize)
        let slowest = slots.max() ?? ready
        let imbalance = StepTimer.splitWait(gradientWait, ready: ready, slowest: slowest)
        current.values[Part.imbalance.rawValue] += imbalance
        current.values[Part.allreduce.rawValue] += gradientWait - imbalance
        gradientWait = 0
    }

    /// The part of a rank's gradient wait spent waiting for the slowest rank to be ready.
    public static func splitWait(_ wait: Double, ready: Double, slowest: Double) -> Double {
        max(0, min(wait, slowest - ready))
    }

    /// The step ends: everything since the last phase is `other`; logs the step's line.
    public func end() {
        lap(.other)
        if let q = quota, let t = q.throttledSeconds() { currentThrottled = max(0, t - throttledMark); totalThrottled += currentThrottled }
        if gradientWait > 0 { current.values[Part.allreduce.rawValue] += gradientWait; gradientWait = 0 }
        last = current
        steps += 1
        for i in 0..<totals.values.count { totals.values[i] += current.values[i] }
        for i in 0..<totalsCPU.count { totalsCPU[i] += currentCPU[i] }
        guard fd >= 0 else { return }
        var line = "{\"step\":\(stepNumber),\"rank\":\(rank)"
        for (i, n) in StepBreakdown.partNames.enumerated() { line += ",\"\(n)\":" + String(format: "%.6f", current.values[i]) }
        line += ",\"total\":" + String(format: "%.6f", current.total)
        line += String(format: ",\"compute_cpu\":%.6f,\"preempted\":%d,\"other_threads_cpu\":%.6f",
                       currentCPU[0], Int(currentCPU[1]), currentCPU[2])
        if quota != nil { line += String(format: ",\"throttled\":%.6f", currentThrottled) }
        line += "}\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }

    // MARK: the summary over ranks

    /// Every rank's mean seconds per step by part, gathered on every rank (a collective:
    /// every rank calls it after the loop).
    public func summary(_ comm: Communicator?) throws -> StepTimesRecord {
        let n = Double(max(steps, 1))
        let parts = totals.values.count, cpu = totalsCPU.count + 1
        // The throttled time where a quota applies, else NaN (StepTimesRecord.make leaves it out).
        let mine = totals.values.map { $0 / n } + totalsCPU.map { $0 / n } + [quota == nil ? .nan : totalThrottled / n, Double(steps)]
        var all: [[Double]] = [mine]
        if let c = comm, c.size > 1 {
            let flat = try mine.withUnsafeBufferPointer { try c.allGather($0) }
            all = stride(from: 0, to: flat.count, by: mine.count).map { Array(flat[$0..<$0 + mine.count]) }
        }
        return StepTimesRecord.make(perRank: all.map { Array($0[0..<parts]) }, cpuPerRank: all.map { Array($0[parts..<parts + cpu]) },
                                    steps: all.map { Int($0.last!) }, diagnose: diagnose, time: Date().timeIntervalSince1970)
    }
}
