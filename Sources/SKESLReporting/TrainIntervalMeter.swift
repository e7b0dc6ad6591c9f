// Accumulates training steps between two "train" records of the metrics log.
// The loop adds each step; when `due` says so (every N steps or seconds) it takes a record
// and writes it with MetricsLog.write(.train(...)).
import Foundation

public struct TrainIntervalMeter {
    public let everySteps: Int
    public let everySeconds: Double
    private var start: Double
    private var steps = 0, samples = 0, skipped = 0
    private var lossSum = 0.0

    /// `start`: monotonic time the interval starts at (seconds).
    public init(start: Double, everySteps: Int = 50, everySeconds: Double = 60) {
        self.start = start
        self.everySteps = max(1, everySteps)
        self.everySeconds = everySeconds
    }

    public var isEmpty: Bool { steps == 0 }

    /// One optimizer step on `samples` samples with mean loss `loss`; `skipped` samples of
    /// the batch were dropped as unreadable.
    public mutating func add(samples batch: Int, loss: Double, skipped dropped: Int = 0) {
        steps += 1
        samples += batch
        skipped += dropped
        lossSum += loss * Double(batch)
    }

    /// Whether the interval is long enough to be logged.
    public func due(now: Double) -> Bool {
        steps >= everySteps || (steps > 0 && now - start >= everySeconds)
    }

    /// The interval as a record (then starts the next one at `now`).
    public mutating func take(now: Double, wallTime: Double, epoch: Int, step: Int, epochStep: Int,
                              lr: [String: Double]) -> TrainRecord {
        let elapsed = now - start
        let record = TrainRecord(
            time: wallTime, epoch: epoch, step: step, epochStep: epochStep, steps: steps,
            samples: samples, loss: samples > 0 ? lossSum / Double(samples) : .nan, lr: lr,
            samplesPerSecond: elapsed > 0 ? Double(samples) / elapsed : .nan, skipped: skipped)
        start = now
        steps = 0; samples = 0; skipped = 0; lossSum = 0
        return record
    }
}
