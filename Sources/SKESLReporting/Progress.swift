// Progress of a long run on stderr. On a terminal: one status line redrawn in place
// (epoch, step/total, samples/s, ETA, loss, lr). Otherwise (a log file, a batch system):
// plain lines every N seconds or steps, so the log is readable and not flooded.
// Rate, ETA and the shown loss come from a sliding time window, so they follow the
// current speed rather than the average since start (which includes start-up).
import Foundation
import SKESLLog
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds; injectable so rate and ETA can be tested.
public protocol ProgressClock {
    func now() -> Double
}

public struct MonotonicClock: ProgressClock {
    public init() {}
    public func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Cumulative counters sampled over time; rates are taken between the oldest mark still
/// inside the window and the newest.
public struct RateWindow {
    struct Mark { var time: Double; var steps: Int; var samples: Int; var lossSum: Double }
    public let seconds: Double
    private var marks: [Mark] = []
    private var head = 0

    public init(seconds: Double) { self.seconds = seconds }

    /// Records the totals (since the reporter started) at `time`.
    public mutating func add(time: Double, steps: Int, samples: Int, lossSum: Double) {
        marks.append(Mark(time: time, steps: steps, samples: samples, lossSum: lossSum))
        // Keep one mark at or before the window's start so the window spans `seconds`.
        while marks.count - head > 2 && marks[head + 1].time <= time - seconds { head += 1 }
        if head > 1024 { marks.removeFirst(head); head = 0 }
    }

    private var span: (first: Mark, last: Mark)? {
        guard marks.count - head >= 2, let last = marks.last else { return nil }
        let first = marks[head]
        return last.time > first.time ? (first, last) : nil
    }

    public var samplesPerSecond: Double? {
        span.map { Double($0.last.samples - $0.first.samples) / ($0.last.time - $0.first.time) }
    }

    public var secondsPerStep: Double? {
        guard let s = span, s.last.steps > s.first.steps else { return nil }
        return (s.last.time - s.first.time) / Double(s.last.steps - s.first.steps)
    }

    /// Mean loss per sample over the window.
    public var meanLoss: Double? {
        guard let s = span, s.last.samples > s.first.samples else { return nil }
        return (s.last.lossSum - s.first.lossSum) / Double(s.last.samples - s.first.samples)
    }
}

public struct ProgressOptions {
    public var totalEpochs: Int
    public var stepsPerEpoch: Int
    /// Redraw one line in place (a terminal) or print plain lines.
    public var isTerminal: Bool
    /// Plain mode: print a line when this many seconds passed since the last one...
    public var plainEverySeconds: Double
    /// ...or (if set) every this many steps.
    public var plainEverySteps: Int?
    /// Terminal mode: at most this often.
    public var terminalRefreshSeconds: Double
    public var rateWindowSeconds: Double
    /// Terminal mode: the status line is cut to this width, since a wrapped line cannot be
    /// redrawn in place.
    public var terminalColumns: Int

    public init(totalEpochs: Int, stepsPerEpoch: Int,
                isTerminal: Bool = isatty(STDERR_FILENO) != 0,
                plainEverySeconds: Double = 30, plainEverySteps: Int? = nil,
                terminalRefreshSeconds: Double = 0.25, rateWindowSeconds: Double = 30,
                terminalColumns: Int = ProgressOptions.standardErrorColumns()) {
        self.totalEpochs = totalEpochs; self.stepsPerEpoch = stepsPerEpoch; self.isTerminal = isTerminal
        self.plainEverySeconds = plainEverySeconds; self.plainEverySteps = plainEverySteps
        self.terminalRefreshSeconds = terminalRefreshSeconds; self.rateWindowSeconds = rateWindowSeconds
        self.terminalColumns = terminalColumns
    }

    /// The width of the terminal on stderr (120 when unknown).
    public static func standardErrorColumns() -> Int {
        var size = winsize()
        return ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 120
    }
}

/// What the status line shows.
public struct ProgressStatus: Equatable {
    public var epoch: Int
    public var totalEpochs: Int
    public var epochStep: Int
    public var stepsPerEpoch: Int
    public var globalStep: Int
    public var totalSteps: Int
    public var samplesPerSecond: Double?
    public var etaSeconds: Double?
    public var loss: Double?
    public var lr: [String: Double]

    /// e.g. "epoch 3/200 step 120/1284 | 64.0 samples/s | ETA 1h02m | loss 0.7123 | lr bert 5.0e-06 head 1.0e-04"
    public var line: String {
        var parts = ["epoch \(epoch)/\(totalEpochs) step \(epochStep)/\(stepsPerEpoch)"]
        parts.append(samplesPerSecond.map { String(format: "%.1f samples/s", $0) } ?? "- samples/s")
        parts.append("ETA " + (etaSeconds.map(ProgressReporter.formatDuration) ?? "-"))
        parts.append("loss " + (loss.map { String(format: "%.4f", $0) } ?? "-"))
        if !lr.isEmpty {
            let rates = lr.keys.sorted().map { lr.count == 1 ? String(format: "%.1e", lr[$0]!)
                                                          : "\($0) " + String(format: "%.1e", lr[$0]!) }
            parts.append("lr " + rates.joined(separator: " "))
        }
        return parts.joined(separator: " | ")
    }
}

/// Reports training progress. Use from one thread (rank 0's training loop).
public final class ProgressReporter {
    public let options: ProgressOptions
    private let clock: ProgressClock
    private let output: (String) -> Void
    private var window: RateWindow
    private var steps = 0, samples = 0, lossSum = 0.0
    private var lastDraw = -Double.infinity
    private var lastPlainTime: Double
    private var stepsSincePrint = 0
    private var statusShowing = false
    public private(set) var status: ProgressStatus

    /// `output` receives text exactly as it is to appear (control characters included);
    /// by default it goes to stderr unbuffered.
    public init(options: ProgressOptions, clock: ProgressClock = MonotonicClock(),
                output: @escaping (String) -> Void = ProgressReporter.writeToStandardError) {
        self.options = options
        self.clock = clock
        self.output = output
        window = RateWindow(seconds: options.rateWindowSeconds)
        let t0 = clock.now()
        window.add(time: t0, steps: 0, samples: 0, lossSum: 0)
        lastPlainTime = t0
        status = ProgressStatus(epoch: 1, totalEpochs: options.totalEpochs, epochStep: 0,
                                stepsPerEpoch: options.stepsPerEpoch, globalStep: 0,
                                totalSteps: options.totalEpochs * options.stepsPerEpoch, lr: [:])
    }

    public static func writeToStandardError(_ s: String) { Log.raw(s) }

    /// One optimizer step done: `epochStep` steps of (1-based) `epoch` are done, this one on
    /// `samples` samples with mean loss `loss`.
    public func step(epoch: Int, epochStep: Int, samples batch: Int, loss: Double, lr: [String: Double]) {
        let now = clock.now()
        steps += 1; samples += batch; lossSum += loss * Double(batch)
        window.add(time: now, steps: steps, samples: samples, lossSum: lossSum)
        let global = (epoch - 1) * options.stepsPerEpoch + epochStep
        let remaining = max(0, status.totalSteps - global)
        status.epoch = epoch
        status.epochStep = epochStep
        status.globalStep = global
        status.samplesPerSecond = window.samplesPerSecond
        status.etaSeconds = window.secondsPerStep.map { Double(remaining) * $0 }
        status.loss = window.meanLoss
        status.lr = lr
        stepsSincePrint += 1

        if options.isTerminal {
            if now - lastDraw >= options.terminalRefreshSeconds || epochStep == options.stepsPerEpoch {
                output("\r\u{1B}[2K" + terminalLine)
                statusShowing = true
                lastDraw = now
            }
        } else {
            let byTime = now - lastPlainTime >= options.plainEverySeconds
            let bySteps = options.plainEverySteps.map { global % $0 == 0 } ?? false
            if byTime || bySteps { printPlain(now) }
        }
    }

    /// A message on a line of its own (e.g. "epoch 3: valid loss 0.71"); on a terminal the
    /// status line is cleared first and redrawn below it.
    public func message(_ text: String) {
        if options.isTerminal && statusShowing {
            output("\r\u{1B}[2K" + text + "\n" + terminalLine)
        } else {
            output(text + "\n")
        }
    }

    /// End of an epoch: the epoch's last status stays on screen (or is printed), then `summary`.
    public func endEpoch(summary: String? = nil) {
        if options.isTerminal {
            if statusShowing { output("\r\u{1B}[2K" + terminalLine + "\n"); statusShowing = false }
        } else if stepsSincePrint > 0 {
            printPlain(clock.now())
        }
        if let summary { output(summary + "\n") }
    }

    /// Leaves the terminal on a fresh line.
    public func finish() {
        if options.isTerminal && statusShowing { output("\n"); statusShowing = false }
    }

    /// The status line cut to the terminal's width (one column spare for the cursor).
    private var terminalLine: String {
        let line = status.line
        return line.count < options.terminalColumns ? line : String(line.prefix(max(10, options.terminalColumns - 1)))
    }

    private func printPlain(_ now: Double) {
        output(status.line + "\n")
        lastPlainTime = now
        stepsSincePrint = 0
    }

    /// "45s", "12m05s", "3h07m", "2d04h".
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "-" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        if s < 86400 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        return String(format: "%dd%02dh", s / 86400, (s % 86400) / 3600)
    }
}
