// Aborts the whole MPI job when one collective call takes longer than a limit.
// A dead or hung peer otherwise leaves the other ranks blocked forever inside
// MPI_Allreduce (Open MPI only tears the job down when a rank *exits*; a rank
// that hangs, or a network that stops answering, is never noticed).
import COpenMPI
import CShim
import Foundation
import SKESLLog

final class CollectiveWatchdog: @unchecked Sendable {
    static let shared = CollectiveWatchdog()

    /// Exit code of a job aborted by the watchdog (the same as timeout(1)).
    static let exitCode: Int32 = 124

    private struct Entry { let what: String; let start: Double }

    private let cond = NSCondition()
    private var limit: Double?
    private var active: [Int: Entry] = [:]
    private var nextID = 0
    private var thread: Thread?
    private var stopping = false
    private var rankLabel = "rank ?"

    private init() {
        if let text = ProcessInfo.processInfo.environment["SKESL_MPI_WATCHDOG"], let s = Double(text), s > 0 {
            limit = s
        }
    }

    var seconds: Double? {
        cond.lock(); defer { cond.unlock() }
        return limit
    }

    func configure(seconds: Double?, rankLabel: String) {
        cond.lock(); defer { cond.unlock() }
        self.rankLabel = rankLabel
        limit = seconds.flatMap { $0 > 0 ? $0 : nil }
        if limit != nil && thread == nil && !stopping {
            // Strong capture: the thread may read the watchdog until it leaves run(). (The
            // shared instance lives for the whole process; no thread reads a dead object.)
            let t = Thread { [self] in self.run() }
            t.name = "skesl-mpi-watchdog"
            thread = t
            t.start()
        }
        cond.broadcast()
    }

    func setRankLabel(_ label: String) {
        cond.lock(); rankLabel = label; cond.unlock()
    }

    /// Registers a collective that is about to block; -1 when the watchdog is off.
    @inline(__always)
    func begin(_ what: @autoclosure () -> String) -> Int {
        cond.lock(); defer { cond.unlock() }
        guard limit != nil else { return -1 }
        nextID += 1
        active[nextID] = Entry(what: what(), start: monotonicSeconds())
        return nextID
    }

    @inline(__always)
    func end(_ id: Int) {
        guard id >= 0 else { return }
        cond.lock(); active[id] = nil; cond.unlock()
    }

    func stop() {
        cond.lock(); stopping = true; cond.broadcast(); cond.unlock()
    }

    private func run() {
        cond.lock()
        while !stopping {
            guard let limit = limit else { cond.wait(); continue }
            let now = monotonicSeconds()
            if let (_, late) = active.first(where: { now - $0.value.start > limit }) {
                let message = "skesl: \(rankLabel): watchdog: \(late.what) has not finished after "
                    + String(format: "%.1f", now - late.start) + " s (limit \(limit) s). A peer rank is stuck, "
                    + "dead or unreachable; aborting the whole job with exit code \(Self.exitCode)."
                cond.unlock()
                Log.write(.error, message)
                MPI_Abort(skesl_mpi_comm_world(), Self.exitCode)
                exit(Self.exitCode)  // MPI_Abort does not return; belt and braces.
            }
            _ = cond.wait(until: Date(timeIntervalSinceNow: min(max(limit / 8, 0.02), 1.0)))
        }
        cond.unlock()
    }
}
