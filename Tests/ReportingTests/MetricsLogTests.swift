// The metrics log: every record kind written and parsed back line by line, no buffering,
// concurrent writers, and errors that name the file and line.
import Foundation
import XCTest
@testable import SKESLReporting

final class MetricsLogTests: XCTestCase {
    var dir: String = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "skesl-metricslog-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    var logPath: String { dir + "/metrics.jsonl" }

    func sampleMetrics() throws -> RegressionMetrics {
        try RegressionMetrics.compute(predictions: [0.4, -1.1, 2.2, 0.1], labels: [0.6, -0.8, 1.8, 0])
    }

    func writeSampleRun() throws -> [MetricsRecord] {
        let log = try MetricsLog(runDirectory: dir, wallClock: { 1.7e9 })
        try log.runStart(run: "mosi-1", phase: "finetune", worldSize: 2, epochs: 3, stepsPerEpoch: 41,
                         batchSize: 32, config: .object(["lr": .number(1e-4), "data": .string("/d/mosi")]),
                         versions: ["skesl": "0.1", "swift": "6.3.1"])
        try log.write(.train(TrainRecord(time: 1.7e9, epoch: 1, step: 20, epochStep: 20, steps: 20, samples: 640,
                                         loss: 0.9, lr: ["bert": 5e-6, "head": 1e-4], samplesPerSecond: 51.5, skipped: 2)))
        try log.write(.train(TrainRecord(time: 1.7e9, epoch: 1, step: 21, epochStep: 21, steps: 1, samples: 32,
                                         loss: .nan, lr: ["head": 1e-4], samplesPerSecond: 50)))
        try log.eval(epoch: 1, split: "valid", loss: 0.81, samples: 4, metrics: try sampleMetrics())
        try log.eval(epoch: 1, split: "pretrain-valid", loss: 0.5, samples: 10)
        try log.checkpoint(epoch: 1, step: 41, path: "checkpoints/epoch-1.h5", reason: .best, bytes: 123456)
        try log.runEnd(status: .completed, epochs: 3, steps: 123, elapsedSeconds: 3600.5, bestEpoch: 1)
        log.close()
        return try MetricsLogReader.read(runDirectory: dir).records
    }

    func testEveryKindParsesBackLineByLineWithItsFields() throws {
        let records = try writeSampleRun()
        XCTAssertEqual(records.map(\.kind), ["run_start", "train", "train", "eval", "eval", "checkpoint", "run_end"])

        // Independently of the Swift reader: each line is one JSON object with the documented keys.
        let lines = try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 7)
        let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        for line in lines { XCTAssertTrue(line.hasPrefix("{\"kind\":"), String(line)) }
        XCTAssertEqual(Set(objects[0].keys), ["kind", "time", "run", "phase", "world_size", "epochs", "steps_per_epoch",
                                              "batch_size", "config", "versions"])
        XCTAssertEqual(objects[0]["world_size"] as? Int, 2)
        XCTAssertEqual((objects[0]["config"] as? [String: Any])?["data"] as? String, "/d/mosi")
        XCTAssertEqual(Set(objects[1].keys), ["kind", "time", "epoch", "step", "epoch_step", "steps", "samples", "loss",
                                              "lr", "samples_per_s", "skipped"])
        XCTAssertEqual((objects[1]["lr"] as? [String: Double])?["bert"], 5e-6)
        XCTAssertEqual(objects[2]["loss"] as? String, "NaN")
        let metrics = objects[3]["metrics"] as! [String: Any]
        XCTAssertEqual(Set(metrics.keys), ["mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5",
                                           "n", "n_non0"])
        XCTAssertEqual(objects[3]["split"] as? String, "valid")
        XCTAssertNil(objects[4]["metrics"])
        XCTAssertEqual(objects[5]["path"] as? String, "checkpoints/epoch-1.h5")
        XCTAssertEqual(objects[6]["elapsed_s"] as? Double, 3600.5)
        XCTAssertEqual(objects[6]["best_epoch"] as? Int, 1)

        // And the typed records round-trip.
        guard case .eval(let e) = records[3], case .train(let t) = records[2], case .runStart(let s) = records[0] else {
            return XCTFail("kinds")
        }
        XCTAssertEqual(e.metrics, try sampleMetrics())
        XCTAssertTrue(t.loss.isNaN)
        XCTAssertEqual(s.config, .object(["lr": .number(1e-4), "data": .string("/d/mosi")]))
        XCTAssertEqual(s.versions["swift"], "6.3.1")
    }

    func testEachLineIsInTheFileBeforeTheLogIsClosed() throws {
        let log = try MetricsLog(path: logPath, wallClock: { 1 })
        try log.eval(epoch: 1, split: "valid", loss: 1, samples: 1)
        // Read while the writer still holds the file open: nothing waits in a buffer.
        XCTAssertEqual(try MetricsLogReader.read(path: logPath).records.count, 1)
        try log.eval(epoch: 2, split: "valid", loss: 1, samples: 1)
        XCTAssertEqual(try MetricsLogReader.read(path: logPath).records.count, 2)
        log.close()
        XCTAssertThrowsError(try log.eval(epoch: 3, split: "valid", loss: 1, samples: 1))
    }

    func testAppendsAfterReopeningForAResumedRun() throws {
        try MetricsLog(path: logPath).runStart(run: "a", phase: "pretrain", worldSize: 1)
        try MetricsLog(path: logPath).runStart(run: "a", phase: "pretrain", worldSize: 1, resumedFromEpoch: 5)
        let recs = try MetricsLogReader.read(path: logPath).records
        XCTAssertEqual(recs.count, 2)
        guard case .runStart(let second) = recs[1] else { return XCTFail() }
        XCTAssertEqual(second.resumedFromEpoch, 5)
    }

    func testConcurrentWritersNeverInterleaveLines() throws {
        let log = try MetricsLog(path: logPath)
        DispatchQueue.concurrentPerform(iterations: 200) { i in
            try! log.checkpoint(epoch: i, step: i, path: String(repeating: "p", count: 50 + i), reason: .epoch)
        }
        let recs = try MetricsLogReader.read(path: logPath).records
        XCTAssertEqual(recs.count, 200)
        let epochs = Set(recs.compactMap { r -> Int? in if case .checkpoint(let c) = r { return c.epoch }; return nil })
        XCTAssertEqual(epochs, Set(0..<200))
    }

    func testMalformedLineErrorNamesFileLineAndField() throws {
        let good = try MetricsRecord.eval(EvalRecord(time: 1, epoch: 1, split: "valid", loss: 1, samples: 3)).jsonLine()
        try (good + "\n{\"kind\":\"eval\",\"time\":1\n" + good + "\n").write(toFile: logPath, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MetricsLogReader.read(runDirectory: dir)) {
            XCTAssertTrue("\($0)".hasPrefix("\(logPath):2: malformed metrics record: not a JSON object"), "\($0)")
        }
        try (good + "\n\n" + "{\"kind\":\"eval\",\"time\":1,\"split\":\"valid\",\"loss\":1,\"samples\":3}\n")
            .write(toFile: logPath, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MetricsLogReader.read(path: logPath)) {
            XCTAssertTrue("\($0)".contains(":3: malformed metrics record: missing field \"epoch\""), "\($0)")
        }
        try (good + "\n{\"kind\":\"train\",\"time\":1,\"epoch\":\"one\"}\n").write(toFile: logPath, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MetricsLogReader.read(path: logPath)) {
            XCTAssertTrue("\($0)".contains(":2: malformed metrics record: field \"epoch\" is not a Int"), "\($0)")
        }
    }

    func testCutOffLastLineIsAWarningAndUnknownKindsAreKept() throws {
        let good = try MetricsRecord.eval(EvalRecord(time: 1, epoch: 1, split: "valid", loss: 1, samples: 3)).jsonLine()
        try (good + "\n{\"kind\":\"gpu_stats\",\"watts\":3}\n" + "{\"kind\":\"eval\",\"ti").write(toFile: logPath, atomically: true, encoding: .utf8)
        let contents = try MetricsLogReader.read(path: logPath)
        XCTAssertEqual(contents.records.map(\.kind), ["eval", "gpu_stats"])
        XCTAssertEqual(contents.warnings.count, 1)
        XCTAssertTrue(contents.warnings[0].contains(":3: last line is incomplete"), contents.warnings[0])
    }

    func testMissingDirectoryAndMissingLog() {
        XCTAssertThrowsError(try MetricsLogReader.read(runDirectory: dir + "/nope")) {
            XCTAssertTrue("\($0)".contains("nope: no such run directory"), "\($0)")
        }
        XCTAssertThrowsError(try MetricsLogReader.read(runDirectory: dir)) {
            XCTAssertTrue("\($0)".contains("metrics.jsonl: no metrics log"), "\($0)")
        }
        XCTAssertThrowsError(try MetricsLog(runDirectory: dir + "/nope"))
    }
}
