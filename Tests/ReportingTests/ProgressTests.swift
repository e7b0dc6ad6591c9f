// The progress reporter's rate, ETA and output modes, with an injected clock.
import Foundation
import XCTest
@testable import SKESLReporting

final class ManualClock: ProgressClock {
    var t: Double
    init(_ t: Double = 1000) { self.t = t }
    func now() -> Double { t }
}

final class ProgressTests: XCTestCase {
    func makeReporter(terminal: Bool, epochs: Int = 2, stepsPerEpoch: Int = 10, everySeconds: Double = 1e9,
                      everySteps: Int? = nil, window: Double = 30, clock: ManualClock) -> (ProgressReporter, () -> String) {
        var out = ""
        let r = ProgressReporter(
            options: ProgressOptions(totalEpochs: epochs, stepsPerEpoch: stepsPerEpoch, isTerminal: terminal,
                                     plainEverySeconds: everySeconds, plainEverySteps: everySteps,
                                     terminalRefreshSeconds: 0.25, rateWindowSeconds: window),
            clock: clock, output: { out += $0 })
        return (r, { out })
    }

    func testRateEtaAndLossFromTheInjectedClock() {
        let clock = ManualClock()
        let (r, _) = makeReporter(terminal: false, clock: clock)
        for k in 1...6 {
            clock.t += 0.5
            r.step(epoch: 1, epochStep: k, samples: 32, loss: Double(k), lr: ["head": 1e-4])
        }
        XCTAssertEqual(r.status.samplesPerSecond!, 64, accuracy: 1e-9)       // 32 samples / 0.5 s
        XCTAssertEqual(r.status.etaSeconds!, Double(20 - 6) * 0.5, accuracy: 1e-9)
        XCTAssertEqual(r.status.loss!, 3.5, accuracy: 1e-12)                  // mean of 1...6
        XCTAssertEqual(r.status.globalStep, 6)
        // Second epoch: global step and ETA continue across the epoch boundary.
        for k in 1...4 {
            clock.t += 0.5
            r.step(epoch: 2, epochStep: k, samples: 32, loss: 1, lr: ["head": 1e-4])
        }
        XCTAssertEqual(r.status.globalStep, 14)
        XCTAssertEqual(r.status.etaSeconds!, 3, accuracy: 1e-9)
    }

    func testWindowFollowsTheCurrentSpeed() {
        let clock = ManualClock()
        let (r, _) = makeReporter(terminal: false, epochs: 1, stepsPerEpoch: 1000, window: 10, clock: clock)
        for k in 1...40 { clock.t += 1; r.step(epoch: 1, epochStep: k, samples: 8, loss: 2, lr: [:]) }
        XCTAssertEqual(r.status.samplesPerSecond!, 8, accuracy: 1e-9)
        for k in 41...120 { clock.t += 0.25; r.step(epoch: 1, epochStep: k, samples: 8, loss: 1, lr: [:]) }
        // 20 s at the new speed fill the 10 s window: the old speed and loss are gone.
        XCTAssertEqual(r.status.samplesPerSecond!, 32, accuracy: 1e-9)
        XCTAssertEqual(r.status.etaSeconds!, Double(1000 - 120) * 0.25, accuracy: 1e-9)
        XCTAssertEqual(r.status.loss!, 1, accuracy: 1e-12)
    }

    func testPlainLinesEveryNSecondsWithoutControlCharacters() {
        let clock = ManualClock()
        let (r, out) = makeReporter(terminal: false, everySeconds: 5, clock: clock)
        for k in 1...10 { clock.t += 1; r.step(epoch: 1, epochStep: k, samples: 4, loss: 0.5, lr: ["bert": 5e-6, "head": 1e-4]) }
        r.endEpoch(summary: "epoch 1: valid loss 0.7")
        let lines = out().split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 3, out())   // at 5 s, at 10 s, then the summary (nothing left to print at the end)
        XCTAssertTrue(lines[0].hasPrefix("epoch 1/2 step 5/10 | 4.0 samples/s | ETA 15s | loss 0.5000 | lr bert 5.0e-06 head 1.0e-04"), lines[0])
        XCTAssertTrue(lines[1].hasPrefix("epoch 1/2 step 10/10"), lines[1])
        XCTAssertEqual(lines[2], "epoch 1: valid loss 0.7")
        XCTAssertFalse(out().contains("\r") || out().contains("\u{1B}"))
    }

    func testPlainLinesEveryNSteps() {
        let clock = ManualClock()
        let (r, out) = makeReporter(terminal: false, everySteps: 3, clock: clock)
        for k in 1...10 { clock.t += 0.01; r.step(epoch: 1, epochStep: k, samples: 1, loss: 1, lr: [:]) }
        r.endEpoch()
        let steps = out().split(separator: "\n").map { $0.split(separator: " ")[3] }
        XCTAssertEqual(steps, ["3/10", "6/10", "9/10", "10/10"])
    }

    func testTerminalRedrawsOneLineAtMostEveryRefresh() {
        let clock = ManualClock()
        let (r, out) = makeReporter(terminal: true, clock: clock)
        for k in 1...10 { clock.t += 0.1; r.step(epoch: 1, epochStep: k, samples: 2, loss: 1, lr: [:]) }
        // Draws at steps 1, 4, 7 (0.3 s apart >= 0.25 s) and the epoch's last step 10.
        XCTAssertEqual(out().components(separatedBy: "\r\u{1B}[2K").count - 1, 4)
        XCTAssertFalse(out().contains("\n"))
        r.message("checkpoint written")
        XCTAssertTrue(out().hasSuffix("\r\u{1B}[2Kcheckpoint written\nepoch 1/2 step 10/10 | 20.0 samples/s | ETA 1s | loss 1.0000"), out())
        r.endEpoch(summary: "valid 0.5")
        XCTAssertTrue(out().hasSuffix("step 10/10 | 20.0 samples/s | ETA 1s | loss 1.0000\nvalid 0.5\n"))
    }

    func testTerminalLineIsCutToTheTerminalWidth() {
        let clock = ManualClock()
        var out = ""
        let r = ProgressReporter(options: ProgressOptions(totalEpochs: 1, stepsPerEpoch: 5, isTerminal: true,
                                                          terminalColumns: 40),
                                 clock: clock, output: { out += $0 })
        clock.t += 1
        r.step(epoch: 1, epochStep: 1, samples: 3, loss: 1, lr: ["bert": 1e-5, "head": 1e-4])
        XCTAssertEqual(out, "\r\u{1B}[2K" + String(r.status.line.prefix(39)))
    }

    func testDurations() {
        XCTAssertEqual(ProgressReporter.formatDuration(44.6), "45s")
        XCTAssertEqual(ProgressReporter.formatDuration(725), "12m05s")
        XCTAssertEqual(ProgressReporter.formatDuration(3 * 3600 + 7 * 60 + 10), "3h07m")
        XCTAssertEqual(ProgressReporter.formatDuration(2 * 86400 + 4 * 3600), "2d04h")
        XCTAssertEqual(ProgressReporter.formatDuration(.infinity), "-")
    }

    func testIntervalMeterRecord() {
        var m = TrainIntervalMeter(start: 10, everySteps: 3, everySeconds: 100)
        m.add(samples: 32, loss: 1.0)
        m.add(samples: 32, loss: 2.0, skipped: 1)
        XCTAssertFalse(m.due(now: 11))
        m.add(samples: 16, loss: 4.0)
        XCTAssertTrue(m.due(now: 11))
        let rec = m.take(now: 12, wallTime: 5e8, epoch: 2, step: 33, epochStep: 3, lr: ["head": 1e-4])
        XCTAssertEqual(rec.loss, (32 * 1.0 + 32 * 2.0 + 16 * 4.0) / 80, accuracy: 1e-12)
        XCTAssertEqual(rec.samplesPerSecond, 40, accuracy: 1e-12)
        XCTAssertEqual(rec.steps, 3); XCTAssertEqual(rec.samples, 80); XCTAssertEqual(rec.skipped, 1)
        XCTAssertTrue(m.isEmpty)
        m.add(samples: 1, loss: 1)
        XCTAssertTrue(m.due(now: 12 + 100))   // by time
    }
}
