// The one place that writes diagnostics to stderr (llm.c keeps its logger.h for the same
// reason): levels, a rank prefix for what one rank of many says, and one write per line,
// so that lines from threads and ranks never interleave mid-line. (The only other writer is
// the signal handler in CShim, which may call nothing but write(2).) Results go to stdout
// (print) and the metrics log; this is for people watching a run.
//
// SKESL_LOG_LEVEL=debug|info|warning|error (default info) hides what is below it. Warnings
// and errors start with "warning: " and "error: "; a rank's line with "rank N: ".
import Foundation

public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug, info, warning, error
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    var word: String { String(describing: self) }
}

public enum Log {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var threshold: LogLevel = {
        let v = ProcessInfo.processInfo.environment["SKESL_LOG_LEVEL"]?.lowercased()
        if let v = v, !v.isEmpty {
            if let l = LogLevel.allCases.first(where: { $0.word == v }) { return l }
            FileHandle.standardError.write(Data("skesl: warning: SKESL_LOG_LEVEL=\(v) is not a level (debug, info, warning, error); using info\n".utf8))
        }
        return .info
    }()

    /// The lowest level written (SKESL_LOG_LEVEL, or set here).
    public static var level: LogLevel {
        get { lock.lock(); defer { lock.unlock() }; return threshold }
        set { lock.lock(); threshold = newValue; lock.unlock() }
    }

    /// Writes one line at `level`, unless the threshold hides it.
    public static func write(_ level: LogLevel, _ line: String) {
        guard level >= self.level else { return }
        let data = Data((line.hasSuffix("\n") ? line : line + "\n").utf8)
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardError.write(data)
    }

    /// Text exactly as it is to appear, control characters included (the progress display's
    /// redrawn status line), at info level, under the same lock as every line.
    public static func raw(_ text: String) {
        guard LogLevel.info >= level else { return }
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardError.write(Data(text.utf8))
    }

    public static func debug(_ m: String) { write(.debug, "debug: " + m) }
    /// The run's narrative (rank 0's progress and summaries), as it is.
    public static func info(_ m: String) { write(.info, m) }
    public static func warning(_ m: String) { write(.warning, "warning: " + m) }
    public static func error(_ m: String) { write(.error, "error: " + m) }
    /// What one rank of many says about itself: "rank N: message".
    public static func rank(_ r: Int, _ m: String, level: LogLevel = .info) { write(level, "rank \(r): " + m) }
    /// What the program says about the process (signals, the BLAS kernel): "skesl: message".
    public static func note(_ m: String, level: LogLevel = .info) { write(level, "skesl: " + m) }
}
