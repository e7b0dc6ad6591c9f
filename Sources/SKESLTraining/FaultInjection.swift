// Crash drills: a rank sends itself SIGKILL at a named point of the run, so that tests
// (and users checking their file system) can reach every window of the checkpoint
// protocol however fast the machine is, which an outside `kill` cannot.
//
//   SKESL_FAULT_KILL_AT=POINT     where (default `step`); see FaultPoint
//   SKESL_FAULT_KILL_AT_STEP=N    at which step: the step being run (`step`), or the step
//                                 whose checkpoint is being written (every other point)
//   SKESL_FAULT_KILL_RANK=r       only on rank r (default: every rank that gets there)
//
// docs/checkpoint-format.md ("Crash drills") lists the points and what a resume does.
import Foundation
import SKESLReporting
import SKESLLog

/// The named points, in the order a checkpoint at an epoch's end passes them.
public enum FaultPoint: String, CaseIterable, Sendable {
    /// During step N, after its gradients, before the update.
    case step
    /// Checkpoint file: some tensors written to `<name>.tmp`, not yet closed.
    case duringTmpWrite = "during-tmp-write"
    /// `<name>.tmp` complete and fsynced, not yet renamed.
    case beforeRename = "before-rename"
    /// Renamed into place, no `.done` marker yet.
    case afterRename = "after-rename"
    /// `.done` written; the copies the checkpoint owes (best, milestone) not yet made.
    case afterDone = "after-done"
    /// Just before `best.h5` is copied / with its `.tmp` copy complete but not renamed.
    case beforeBestCopy = "before-best-copy"
    case duringBestCopy = "during-best-copy"
    /// The same for a milestone copy.
    case beforeMilestoneCopy = "before-milestone-copy"
    case duringMilestoneCopy = "during-milestone-copy"
}

public enum FaultInjection {
    static let environment = ProcessInfo.processInfo.environment
    public static let point: FaultPoint? = {
        guard let raw = environment["SKESL_FAULT_KILL_AT"] else { return environment["SKESL_FAULT_KILL_AT_STEP"] == nil ? nil : .step }
        guard let p = FaultPoint(rawValue: raw) else {
            Log.note("SKESL_FAULT_KILL_AT=\(raw) is not a crash point (\(FaultPoint.allCases.map(\.rawValue).joined(separator: ", "))); ignored", level: .warning)
            return nil
        }
        return p
    }()
    public static let killAtStep: Int? = environment["SKESL_FAULT_KILL_AT_STEP"].flatMap { Int($0) }
    public static let killRank: Int? = environment["SKESL_FAULT_KILL_RANK"].flatMap { Int($0) }
    /// The rank of this process, set by the trainer (checkpoint code does not know it).
    nonisolated(unsafe) public static var rank = 0

    /// Called with the 1-based number of the step being run.
    public static func check(step: Int, rank: Int) { at(.step, step: step, rank: rank) }

    /// Kills this process when `p` at `step` is the drill's point.
    public static func at(_ p: FaultPoint, step: Int, rank: Int? = nil) {
        let r = rank ?? self.rank
        guard let want = point, want == p, let k = killAtStep, k == step, killRank == nil || killRank == r else { return }
        let name = p == .step ? "SKESL_FAULT_KILL_AT_STEP=\(k)" : "SKESL_FAULT_KILL_AT=\(p.rawValue) at step \(k)"
        Log.rank(r, "\(name): killing this rank (SIGKILL)", level: .warning)
        kill(getpid(), SIGKILL)
    }
}

/// A test hook for long steps, so that signal tests do not depend on catching a fast step:
/// `SKESL_TEST_STALL_AT_STEP=N` makes step N stall for `SKESL_TEST_STALL_SECONDS` (default
/// 3600) after its backward pass, before the gradients are summed and the update; the
/// parameters still hold step N-1, as during a long forward or backward pass. Only a run
/// that started fresh stalls: the run that resumes it goes at full speed, so a test's
/// continuation is quick. It announces the stall on stderr, which tests wait for.
public enum StallInjection {
    public static let atStep: Int? = ProcessInfo.processInfo.environment["SKESL_TEST_STALL_AT_STEP"].flatMap { Int($0) }
    public static let seconds: Double = ProcessInfo.processInfo.environment["SKESL_TEST_STALL_SECONDS"].flatMap { Double($0) } ?? 3600

    public static func check(step: Int, rank: Int, resumed: Bool) {
        guard let n = atStep, n == step, !resumed else { return }
        Log.rank(rank, "SKESL_TEST_STALL_AT_STEP=\(n): step \(n) stalls for \(seconds) s before its update", level: .warning)
        let end = StopSignal.monotonicSeconds() + seconds
        while true {
            let left = end - StopSignal.monotonicSeconds()
            if left <= 0 { break }
            usleep(UInt32(min(left, 0.5) * 1e6))
        }
    }
}
