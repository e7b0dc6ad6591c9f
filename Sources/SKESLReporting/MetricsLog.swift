// The per-run metrics log, RUN_DIR/metrics.jsonl: a writer for rank 0 and a reader.
// Each record is one line handed to the kernel by a single write(2) on an O_APPEND file
// descriptor, with no user-space buffer: a crash of the process loses no logged line and
// never leaves half a line from this writer. Checkpoint and run-end records are also
// fsync'ed, so they survive a machine crash too.
import Foundation
import SKESLKernels
#if canImport(Glibc)
import Glibc
#endif

public enum MetricsLogError: Error, CustomStringConvertible {
    case notADirectory(String)
    case missingLog(String)
    case cannotOpen(String, String)
    case writeFailed(String, String)
    case malformedLine(file: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case .notADirectory(let p):
            return "\(p): no such run directory; pass the directory a training run wrote (it holds metrics.jsonl)"
        case .missingLog(let p):
            return "\(p): no metrics log; the run did not start, or this is not a run directory"
        case let .cannotOpen(p, why): return "\(p): cannot open: \(why)"
        case let .writeFailed(p, why): return "\(p): cannot write the metrics log: \(why)"
        case let .malformedLine(f, l, why):
            return "\(f):\(l): malformed metrics record: \(why); fix or delete that line (each line must be one JSON object, see docs/metrics-log.md)"
        }
    }
}

/// Appends records to a metrics log. Meant for rank 0; a lock makes concurrent calls
/// from several threads (e.g. a checkpoint writer) safe.
public final class MetricsLog: @unchecked Sendable {
    public static let fileName = "metrics.jsonl"
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var closed = false
    /// Wall clock for the records' "time" (injectable for tests).
    public let wallClock: @Sendable () -> Double

    /// Opens (creating if needed) RUN_DIR/metrics.jsonl for appending. A resumed run
    /// appends to the same file, after a new run_start record.
    public convenience init(runDirectory: String,
                            wallClock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDir), isDir.boolValue else {
            throw MetricsLogError.notADirectory(runDirectory)
        }
        try self.init(path: (runDirectory as NSString).appendingPathComponent(Self.fileName), wallClock: wallClock)
    }

    public init(path: String, wallClock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MetricsLogError.cannotOpen(path, String(cString: strerror(errno))) }
        self.path = path
        self.fd = fd
        self.wallClock = wallClock
    }

    deinit { close() }

    public func close() {
        lock.lock(); defer { lock.unlock() }
        if !closed { _ = Glibc.close(fd); closed = true }
    }

    /// Writes one record as one line.
    public func write(_ record: MetricsRecord) throws {
        let line = try record.jsonLine() + "\n"
        lock.lock(); defer { lock.unlock() }
        guard !closed else { throw MetricsLogError.writeFailed(path, "the log is closed") }
        let bytes = Array(line.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MetricsLogError.writeFailed(path, String(cString: strerror(errno)))
            }
            done += n
        }
        switch record {
        case .checkpoint, .runEnd: _ = fsync(fd)
        default: break
        }
    }

    // Conveniences that stamp the time.

    public func runStart(run: String, phase: String, worldSize: Int, epochs: Int? = nil,
                         stepsPerEpoch: Int? = nil, batchSize: Int? = nil, resumedFromEpoch: Int? = nil,
                         config: LogJSON = .object([:]), versions: [String: String] = [:], blas: BLASReport? = nil,
                         placement: PlacementReport? = nil, gradientSum: String? = nil) throws {
        try write(.runStart(RunStartRecord(time: wallClock(), run: run, phase: phase, worldSize: worldSize,
                                           epochs: epochs, stepsPerEpoch: stepsPerEpoch, batchSize: batchSize,
                                           resumedFromEpoch: resumedFromEpoch, config: config, versions: versions, blas: blas,
                                           placement: placement, gradientSum: gradientSum)))
    }

    public func eval(epoch: Int, split: String, loss: Double, samples: Int, metrics: RegressionMetrics? = nil) throws {
        try write(.eval(EvalRecord(time: wallClock(), epoch: epoch, split: split, loss: loss,
                                   samples: samples, metrics: metrics)))
    }

    public func checkpoint(epoch: Int, step: Int, path: String, reason: CheckpointReason, bytes: Int? = nil) throws {
        try write(.checkpoint(CheckpointRecord(time: wallClock(), epoch: epoch, step: step, path: path,
                                               reason: reason.rawValue, bytes: bytes)))
    }

    public func runEnd(status: RunStatus, epochs: Int, steps: Int, elapsedSeconds: Double,
                       bestEpoch: Int? = nil, message: String? = nil) throws {
        try write(.runEnd(RunEndRecord(time: wallClock(), status: status, epochs: epochs, steps: steps,
                                       elapsedSeconds: elapsedSeconds, bestEpoch: bestEpoch, message: message)))
    }
}

/// The records of a metrics log, read back.
public struct MetricsLogContents: Sendable {
    public var records: [MetricsRecord]
    /// Problems that did not stop the reading (a cut-off last line of a crashed run).
    public var warnings: [String]
}

public enum MetricsLogReader {
    /// Reads RUN_DIR/metrics.jsonl.
    public static func read(runDirectory: String) throws -> MetricsLogContents {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDir), isDir.boolValue else {
            throw MetricsLogError.notADirectory(runDirectory)
        }
        let path = (runDirectory as NSString).appendingPathComponent(MetricsLog.fileName)
        guard FileManager.default.fileExists(atPath: path) else { throw MetricsLogError.missingLog(path) }
        return try read(path: path)
    }

    /// Reads a metrics log. Blank lines are skipped. A malformed line is an error naming the
    /// file and line, except a last line without its newline (a writer killed mid-line),
    /// which is dropped with a warning so a crashed run can still be reported.
    public static func read(path: String) throws -> MetricsLogContents {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetricsLogError.cannotOpen(path, "not readable")
        }
        let text = String(decoding: data, as: UTF8.self)
        let endsWithNewline = text.hasSuffix("\n")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var records: [MetricsRecord] = []
        var warnings: [String] = []
        for (i, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            do {
                records.append(try MetricsRecord.parse(line: line))
            } catch {
                let isCutOffTail = i == lines.count - 1 && !endsWithNewline
                if isCutOffTail {
                    warnings.append("\(path):\(i + 1): last line is incomplete (the run was cut off while writing); ignored")
                } else {
                    throw MetricsLogError.malformedLine(file: path, line: i + 1, reason: describe(error))
                }
            }
        }
        return MetricsLogContents(records: records, warnings: warnings)
    }

    /// A decoding error in words: which field, and what is wrong with it.
    static func describe(_ error: Error) -> String {
        func pathText(_ path: [CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            let at = pathText(ctx.codingPath)
            return "missing field \"\(at.isEmpty ? key.stringValue : at + "." + key.stringValue)\""
        case DecodingError.typeMismatch(let type, let ctx):
            return "field \"\(pathText(ctx.codingPath))\" is not a \(type)"
        case DecodingError.valueNotFound(let type, let ctx):
            return "field \"\(pathText(ctx.codingPath))\" is null, expected a \(type)"
        case DecodingError.dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "not a JSON object" : "field \"\(pathText(ctx.codingPath))\": \(ctx.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
