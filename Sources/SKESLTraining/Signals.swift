// Stop requests from signals, as launchers send them (docs/cluster.md, "Signals"):
//   SIGUSR1, SIGINT  stop at the end of the current step, with a final checkpoint;
//   SIGTERM          write the last completed step's state at once (the step in progress
//                    is abandoned), then stop;
//   a later request  (after the first burst) writes at once too, and forces an exit after
//                    a grace period if the run has not ended by then.
// Launchers send bursts: Slurm's time limit delivers SIGTERM, SIGCONT, SIGTERM within
// milliseconds, so signals that arrive within `coalesceSeconds` of the previous one are one
// request. SIGCONT is not a request at all: it also resumes a job suspended by Slurm, which
// must go on training. The handler (CShim) only timestamps the signal and writes it to a
// pipe; a thread reads the pipe and applies the rules below.
import CShim
import Foundation
import SKESLReporting
import SKESLLog

/// How urgently the run has been asked to stop.
public enum StopLevel: Int, Comparable, Sendable {
    case none = 0
    /// Finish the step, checkpoint, stop (SIGUSR1, SIGINT).
    case endOfStep = 1
    /// Write the last completed step now and stop without finishing the step (SIGTERM).
    case now = 2
    public static func < (a: StopLevel, b: StopLevel) -> Bool { a.rawValue < b.rawValue }
}

/// The rules, apart from threads and signals (unit-tested in StopRequestTests).
public struct StopRequests: Sendable {
    public var coalesceSeconds: Double
    public var graceSeconds: Double
    public private(set) var level: StopLevel = .none
    /// When a forced exit has been scheduled: the monotonic time and the exit code.
    public private(set) var forcedExit: (at: Double, code: Int32)? = nil
    var lastSignal: Double? = nil

    public init(coalesceSeconds: Double = 2, graceSeconds: Double = 30) {
        self.coalesceSeconds = coalesceSeconds
        self.graceSeconds = graceSeconds
    }

    public enum Effect: Equatable, Sendable {
        /// Write the last completed step's checkpoint now (once per run).
        case writeNow
        /// Exit with this code at this monotonic time unless the run has ended.
        case forceExit(at: Double, code: Int32)
    }

    /// One signal at monotonic time `t` (seconds).
    public mutating func receive(_ sig: Int32, at t: Double) -> [Effect] {
        let kind: StopLevel = sig == SIGTERM ? .now : .endOfStep
        defer { lastSignal = t }
        let before = level
        if level == .none || (lastSignal.map { t - $0 <= coalesceSeconds } ?? false) {
            // The first request, or more of the same burst: the stronger kind counts.
            level = max(level, kind)
        } else {
            // A second request: write now if that is still owed, and leave the grace period.
            level = .now
            if forcedExit == nil { forcedExit = (t + graceSeconds, 128 + sig) }
            var effects: [Effect] = before < .now ? [.writeNow] : []
            effects.append(.forceExit(at: forcedExit!.at, code: forcedExit!.code))
            return effects
        }
        return before < .now && level == .now ? [.writeNow] : []
    }
}

public enum StopSignal {
    /// The signals that ask for a stop. SIGCONT is deliberately not among them.
    public static let signals: [Int32] = [SIGINT, SIGTERM, SIGUSR1]

    private static let lock = NSLock()
    nonisolated(unsafe) private static var rules = StopRequests()
    nonisolated(unsafe) private static var installed = false
    nonisolated(unsafe) private static var writeNow: (@Sendable () -> Void)? = nil
    nonisolated(unsafe) private static var writeNowDue = false
    nonisolated(unsafe) private static var label = "skesl"

    /// Installs the handlers and starts the thread that reads them. The grace period of a
    /// second request is `SKESL_STOP_GRACE_SECONDS` (default 30).
    public static func install() {
        lock.lock(); defer { lock.unlock() }
        guard !installed else { return }
        installed = true
        if let g = ProcessInfo.processInfo.environment["SKESL_STOP_GRACE_SECONDS"].flatMap(Double.init), g >= 0 {
            rules.graceSeconds = g
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC); _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let readFD = fds[0]
        let t = Thread {
            var r = skesl_signal_record()
            while true {
                let n = withUnsafeMutableBytes(of: &r) { read(readFD, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n == MemoryLayout<skesl_signal_record>.size else { return }
                receive(r.signal, at: Double(r.nanoseconds) / 1e9)
            }
        }
        t.name = "skesl-stop-signals"
        t.start()
        _ = signals.withUnsafeBufferPointer { skesl_stop_signals_install(fds[1], $0.baseAddress, Int32($0.count)) }
    }

    /// The level of the requests so far.
    public static var level: StopLevel { lock.lock(); defer { lock.unlock() }; return rules.level }
    public static var requested: Bool { level != .none }

    /// Who prints (for example "rank 1"): messages name the process that got the signal.
    public static func setLabel(_ l: String) { lock.lock(); label = l; lock.unlock() }

    /// The training loop's "write the last completed step now" action, run on a thread of
    /// its own when a request reaches `.now` (at once if one already has). nil: none (before
    /// the loop starts and after it ends, the loop itself checks `level`).
    public static func setWriteNow(_ action: (@Sendable () -> Void)?) {
        lock.lock()
        writeNow = action
        let due = writeNowDue && action != nil
        if due { writeNowDue = false }
        lock.unlock()
        if due, let a = action { runDetached("skesl-stop-write", a) }
    }

    /// Forgets every request (tests run several trainings in one process).
    public static func reset() {
        lock.lock(); defer { lock.unlock() }
        let g = rules.graceSeconds
        rules = StopRequests(graceSeconds: g)
        writeNowDue = false
    }

    /// A signal as the handler thread sees it; also what tests call to simulate one.
    public static func receive(_ sig: Int32, at t: Double) {
        lock.lock()
        let before = rules.level
        let effects = rules.receive(sig, at: t)
        let after = rules.level, who = label
        var action: (@Sendable () -> Void)? = nil
        for e in effects where e == .writeNow {
            if let a = writeNow { action = a } else { writeNowDue = true }
        }
        lock.unlock()
        let name = signalName(sig)
        if before == .none {
            note("\(who): \(name): " + (after == .now
                ? "writing the last completed step's checkpoint now, then stopping (the step in progress is abandoned)"
                : "stopping at the end of this step with a checkpoint"))
        }
        if let a = action { runDetached("skesl-stop-write", a) }
        for case .forceExit(let at, let code) in effects {
            note("\(who): \(name) again: " + (before < .now ? "writing the last completed step's checkpoint now; " : "")
                 + String(format: "exiting in %.0f s if the run has not ended by then", max(0, at - t)))
            scheduleExit(at: at, code: code, reason: name)
        }
    }

    nonisolated(unsafe) private static var exitScheduled = false

    private static func scheduleExit(at: Double, code: Int32, reason: String) {
        lock.lock()
        guard !exitScheduled else { lock.unlock(); return }
        exitScheduled = true
        let who = label
        lock.unlock()
        runDetached("skesl-stop-deadline") {
            while true {
                let left = at - monotonicSeconds()
                if left <= 0 { break }
                usleep(UInt32(min(left, 1) * 1e6))
            }
            note("\(who): the grace period after a second stop request (\(reason)) is over: exiting with code \(code)")
            _exit(code)
        }
    }

    private static func runDetached(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let t = Thread { body() }
        t.name = name
        t.start()
    }

    static func note(_ m: String) { Log.note(m, level: .warning) }

    static func signalName(_ s: Int32) -> String {
        switch s {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(s)"
        }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Shard files are read through memory mappings (docs/feature-store.md, "Reading rows"): a
/// file truncated under a running job, or a disk error on one of its pages, then arrives as
/// SIGBUS instead of a read error. This turns it into a plain message and exit code 135.
public enum MappedFileFault {
    public static func install() {
        signal(SIGBUS) { _ in
            let msg = "skesl: bus error reading a memory-mapped store file: a shard was truncated or replaced, or its disk returned an I/O error, while this run had it open. Checkpoints already written are intact. Check the store with `skesl store verify STORE`, then rerun the same command to resume from the newest checkpoint.\n"
            msg.withCString { p in _ = write(2, p, strlen(p)) }
            _exit(135)
        }
    }
}

/// `SKESL_STATUS_FILE=PATH`: rank 0 writes `running` there once every rank takes stop
/// signals (after the ranks' first collective, which each enters with its handlers
/// installed), and the run's end status when it writes run_end (one word and a newline: a
/// RunStatus, `completed`, `max_steps`, `stopped`, `interrupted` or `failed`, as in the
/// run_end record), atomically. Cluster/slurm.sbatch holds back a SIGUSR1 that comes before
/// `running` (a rank without its handler would die of it), and reads the end status to tell
/// a run that should continue (interrupted) from one that is done or failed, whatever the
/// launcher's exit code says (a launcher killed at a time limit exits non-zero either way).
public enum RunStatusFile {
    public static let path: String? = ProcessInfo.processInfo.environment["SKESL_STATUS_FILE"].flatMap { $0.isEmpty ? nil : $0 }

    public static func write(_ status: RunStatus) { write(word: status.rawValue) }

    /// Every rank has its stop-signal handlers: a stop request can be passed on now.
    public static func writeRunning() { write(word: "running") }

    static func write(word: String) {
        guard let p = path else { return }
        let tmp = p + ".tmp"
        do {
            try (word + "\n").write(toFile: tmp, atomically: false, encoding: .utf8)
            guard rename(tmp, p) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            Log.note("warning: could not write the run status to \(p) (SKESL_STATUS_FILE): \(error)", level: .warning)
        }
    }
}
