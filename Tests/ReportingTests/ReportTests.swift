// The HTML run report: its plots hold the logged numbers (polyline points mapped back
// through the axis ticks), its tables hold the metrics, it is self-contained, and
// `skesl report` fails clearly on bad input. The run is the Python-written fixture
// Tests/Fixtures/metrics/sample-run/metrics.jsonl, read here independently with
// JSONSerialization to get the expected values.
import Foundation
import XCTest
@testable import SKESLReporting

final class ReportTests: XCTestCase {
    static let fixtureLog = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/metrics/sample-run/metrics.jsonl").path

    var rawLines: [[String: Any]] = []
    var page = ""

    override func setUpWithError() throws {
        let text = try String(contentsOfFile: Self.fixtureLog, encoding: .utf8)
        rawLines = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let data = RunReportData(records: try MetricsLogReader.read(path: Self.fixtureLog).records)
        page = RunReport.render(data, title: "demo")
    }

    func lines(kind: String, split: String? = nil) -> [[String: Any]] {
        rawLines.filter { $0["kind"] as? String == kind && (split == nil || $0["split"] as? String == split) }
    }

    // MARK: SVG reading

    struct Axis {
        var a: Double, b: Double, log: Bool   // value = a + b * pixel (in log10 space on a log axis)
        func value(_ px: Double) -> Double { log ? pow(10, a + b * px) : a + b * px }
    }

    func matches(_ pattern: String, in text: String) -> [[String]] {
        let re = try! NSRegularExpression(pattern: pattern)
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { m in
            (0..<m.numberOfRanges).map { ns.substring(with: m.range(at: $0)) }
        }
    }

    func chart(_ id: String) throws -> String {
        try XCTUnwrap(matches("<svg class=\"chart\" id=\"\(id)\"[\\s\\S]*?</svg>", in: page).first?[0], "no chart \(id)")
    }

    /// The axis scale from the tick labels: the first and last tick fix the map, and every
    /// other tick must lie on it.
    func axis(_ svg: String, _ which: String) throws -> Axis {
        let log = svg.contains("data-scale=\"log\"") && which == "y"
        let ticks = matches("<text class=\"tick \(which)\" data-v=\"([^\"]+)\" data-px=\"([^\"]+)\"", in: svg)
            .map { (v: Double($0[1])!, px: Double($0[2])!) }
        XCTAssertGreaterThanOrEqual(ticks.count, 3, "\(which) ticks")
        let f = { (v: Double) in log ? log10(v) : v }
        let (t0, t1) = (ticks.first!, ticks.last!)
        let b = (f(t1.v) - f(t0.v)) / (t1.px - t0.px)
        let axis = Axis(a: f(t0.v) - b * t0.px, b: b, log: log)
        for t in ticks { XCTAssertEqual(axis.a + b * t.px, f(t.v), accuracy: abs(b) * 0.02, "tick \(t.v)") }
        return axis
    }

    /// The data points of one series, mapped back from pixels.
    func points(_ svg: String, series: String) throws -> [(x: Double, y: Double)] {
        let x = try axis(svg, "x"), y = try axis(svg, "y")
        let group = try XCTUnwrap(matches("<g class=\"series\" data-series=\"\(NSRegularExpression.escapedPattern(for: series))\">([\\s\\S]*?)</g>", in: svg).first?[1],
                                  "no series \(series)")
        return matches("<polyline points=\"([^\"]+)\"", in: group).flatMap { m in
            m[1].split(separator: " ").map { pair -> (x: Double, y: Double) in
                let c = pair.split(separator: ",").map { Double($0)! }
                return (x.value(c[0]), y.value(c[1]))
            }
        }
    }

    func assertSeries(_ got: [(x: Double, y: Double)], _ want: [(x: Double, y: Double)], relative: Bool = false,
                      _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let ys = want.map(\.y), yRange = (ys.max()! - ys.min()!)
        let xs = want.map(\.x), xRange = max(1, xs.max()! - xs.min()!)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g.x, w.x, accuracy: xRange * 1e-3, "\(what) x", file: file, line: line)
            // Pixels have 2 decimals over ~220 px: 1e-3 of the range (or of the value on a log axis).
            XCTAssertEqual(g.y, w.y, accuracy: relative ? abs(w.y) * 1e-3 : yRange * 1e-3, "\(what) at x=\(w.x)", file: file, line: line)
        }
    }

    // MARK: plots

    func testTrainingLossAndThroughputPlotsHoldTheLoggedValues() throws {
        let train = lines(kind: "train")
        let steps = train.map { Double($0["step"] as! Int) }
        assertSeries(try points(chart("chart-loss-step"), series: "train"),
                     zip(steps, train.map { $0["loss"] as! Double }).map { ($0, $1) }, "train loss")
        assertSeries(try points(chart("chart-throughput"), series: "samples/s"),
                     zip(steps, train.map { $0["samples_per_s"] as! Double }).map { ($0, $1) }, "samples/s")
    }

    func testEpochLossPlotHoldsValidTestAndSampleWeightedTrainMeans() throws {
        let svg = try chart("chart-loss-epoch")
        for split in ["valid", "test"] {
            let evals = lines(kind: "eval", split: split)
            assertSeries(try points(svg, series: split),
                         evals.map { (Double($0["epoch"] as! Int), $0["loss"] as! Double) }, "\(split) loss")
        }
        var sums: [Int: (Double, Double)] = [:]
        for t in lines(kind: "train") {
            let n = Double(t["samples"] as! Int)
            sums[t["epoch"] as! Int, default: (0, 0)].0 += (t["loss"] as! Double) * n
            sums[t["epoch"] as! Int, default: (0, 0)].1 += n
        }
        assertSeries(try points(svg, series: "train (epoch mean)"),
                     sums.keys.sorted().map { (Double($0), sums[$0]!.0 / sums[$0]!.1) }, "train epoch mean")
    }

    func testLearningRatePlotIsLogScaledAndLeavesOutZeros() throws {
        let svg = try chart("chart-lr")
        XCTAssertTrue(svg.contains("data-scale=\"log\""))
        XCTAssertTrue(svg.contains("zero learning rates are not drawn"))
        for group in ["bert", "cross_modal", "head"] {
            let want = lines(kind: "train").compactMap { t -> (x: Double, y: Double)? in
                let lr = (t["lr"] as! [String: Double])[group]!
                return lr > 0 ? (Double(t["step"] as! Int), lr) : nil
            }
            XCTAssertLessThan(want.count, lines(kind: "train").count, "the fixture has zero rates (cosine at T_max)")
            assertSeries(try points(svg, series: group), want, relative: true, "lr \(group)")
        }
        // The gap at lr = 0 splits the line in two.
        let head = matches("data-series=\"head\">([\\s\\S]*?)</g>", in: svg)[0][1]
        XCTAssertEqual(matches("<polyline", in: head).count, 2)
    }

    func testValidationMetricPlots() throws {
        let valid = lines(kind: "eval", split: "valid")
        func want(_ key: String) -> [(x: Double, y: Double)] {
            valid.map { (Double($0["epoch"] as! Int), ($0["metrics"] as! [String: Any])[key] as! Double) }
        }
        let err = try chart("chart-valid-error"), acc = try chart("chart-valid-accuracy")
        assertSeries(try points(err, series: "MAE"), want("mae"), "MAE")
        assertSeries(try points(err, series: "Corr"), want("corr"), "Corr")
        for (key, label) in [("acc2_has0", "Acc-2 has-0"), ("f1_non0", "F1 non-0"), ("acc7", "Acc-7"), ("acc5", "Acc-5")] {
            assertSeries(try points(acc, series: label), want(key), label)
        }
        // Axes are labelled and legends name every series.
        XCTAssertTrue(acc.contains(">epoch</text>") && acc.contains(">fraction</text>"))
        let legend = try XCTUnwrap(matches("<g class=\"legend\">([\\s\\S]*?)</g>", in: acc).first?[1])
        for label in ["Acc-2 has-0", "F1 has-0", "Acc-2 non-0", "F1 non-0", "Acc-7", "Acc-5"] {
            XCTAssertTrue(legend.contains(">\(label)</text>"), label)
        }
    }

    // MARK: tables and page

    func testFinalTableHoldsTheBestEpochsTestMetrics() throws {
        let valid = lines(kind: "eval", split: "valid")
        let best = valid.min { ($0["loss"] as! Double, $0["epoch"] as! Int) < ($1["loss"] as! Double, $1["epoch"] as! Int) }!["epoch"] as! Int
        let test = lines(kind: "eval", split: "test").first { $0["epoch"] as! Int == best }!
        let metrics = test["metrics"] as! [String: Any]
        let table = try XCTUnwrap(matches("<table class=\"final\" id=\"final-metrics\">([\\s\\S]*?)</table>", in: page).first?[1])
        let header = matches("<th>([^<]*)</th>", in: table).map { $0[1] }
        let column = try XCTUnwrap(header.firstIndex(of: "test @ epoch \(best)"), "\(header)")
        for (key, label) in [("mae", "MAE"), ("corr", "Corr"), ("acc2_has0", "Acc-2 has-0"), ("f1_has0", "F1 has-0"),
                             ("acc2_non0", "Acc-2 non-0"), ("f1_non0", "F1 non-0"), ("acc7", "Acc-7"), ("acc5", "Acc-5")] {
            let row = try XCTUnwrap(matches("<tr><td>\(label)</td>(.*)</tr>", in: table).first?[1], label)
            let cells = matches("<td>([^<]*)</td>", in: row).map { $0[1] }
            XCTAssertEqual(cells[column - 1], String(format: "%.4f", metrics[key] as! Double), label)
        }
        // The per-epoch table marks the same epoch.
        XCTAssertTrue(page.contains("<tr class=\"best\"><td>\(best)</td>"))
        // And the terminal rendering carries the same figures.
        let text = RunReport.finalMetricsText(RunReportData(records: try MetricsLogReader.read(path: Self.fixtureLog).records))
        XCTAssertTrue(text.contains("test @ epoch \(best)") && text.contains(String(format: "%.4f", metrics["acc7"] as! Double)))
    }

    func testPageIsSelfContained() {
        XCTAssertTrue(page.hasPrefix("<!DOCTYPE html>"))
        for banned in ["<script", "src=", "href=", "@import", "url(", "<link", "<img", "<iframe"] {
            XCTAssertFalse(page.lowercased().contains(banned), banned)
        }
        // The only URL is the SVG namespace, which browsers never fetch.
        XCTAssertEqual(Set(matches("https?://[^\"' <]+", in: page).map { $0[0] }), ["http://www.w3.org/2000/svg"])
        XCTAssertEqual(matches("<svg ", in: page).count, 6)
    }

    func testWritesReportHtmlIntoTheRunDirectory() throws {
        let dir = NSTemporaryDirectory() + "skesl-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Self.fixtureLog, toPath: dir + "/metrics.jsonl")
        let written = try RunReport.write(runDirectory: dir)
        XCTAssertEqual(written.path, dir + "/report.html")
        XCTAssertEqual(try String(contentsOfFile: written.path, encoding: .utf8),
                       RunReport.render(written.data, title: "mosi-finetune-demo"))

        // A malformed line is named by file and line number.
        var text = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
        text = text.replacingOccurrences(of: "{\"kind\":\"checkpoint\"", with: "{\"kind\":\"checkpoint\",,")
        try text.write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let firstCheckpoint = rawLines.firstIndex { $0["kind"] as? String == "checkpoint" }! + 1
        XCTAssertThrowsError(try RunReport.write(runDirectory: dir)) {
            XCTAssertTrue("\($0)".hasPrefix("\(dir)/metrics.jsonl:\(firstCheckpoint): malformed metrics record"), "\($0)")
        }
    }

    // MARK: folding of resumed and pretraining runs

    func train(_ step: Int, epoch: Int, loss: Double) -> MetricsRecord {
        .train(TrainRecord(time: Double(step), epoch: epoch, step: step, epochStep: step, steps: 10, samples: 100,
                           loss: loss, lr: ["all": 1e-4], samplesPerSecond: 50))
    }

    func testResumedRunKeepsTheLaterRecords() {
        let records: [MetricsRecord] = [
            .runStart(RunStartRecord(time: 0, run: "r", phase: "pretrain", worldSize: 1)),
            train(10, epoch: 1, loss: 5), train(20, epoch: 1, loss: 4), train(30, epoch: 2, loss: 3),
            .eval(EvalRecord(time: 1, epoch: 2, split: "valid", loss: 9, samples: 5)),
            .runStart(RunStartRecord(time: 2, run: "r", phase: "pretrain", worldSize: 1, resumedFromEpoch: 1)),
            train(20, epoch: 2, loss: 2.5), train(30, epoch: 2, loss: 2), train(40, epoch: 2, loss: 1),
            .eval(EvalRecord(time: 3, epoch: 2, split: "valid", loss: 7, samples: 5)),
        ]
        let d = RunReportData(records: records)
        XCTAssertEqual(d.train.map(\.step), [10, 20, 30, 40])
        XCTAssertEqual(d.train.map(\.loss), [5, 2.5, 2, 1])
        XCTAssertEqual(d.series(split: "valid").map(\.loss), [7])
        XCTAssertEqual(d.resumes.count, 1)
        XCTAssertEqual(d.bestEpoch, 2)
    }

    func testPretrainingRunWithADivergedIntervalStillReports() throws {
        let records: [MetricsRecord] = [
            .runStart(RunStartRecord(time: 0, run: "p", phase: "pretrain", worldSize: 4)),
            train(10, epoch: 1, loss: 0.9), train(20, epoch: 1, loss: .nan), train(30, epoch: 1, loss: 0.7),
            train(40, epoch: 1, loss: 0.6),
            .eval(EvalRecord(time: 1, epoch: 1, split: "valid", loss: 0.8, samples: 50)),
        ]
        let d = RunReportData(records: records)
        page = RunReport.render(d, title: "p")
        XCTAssertEqual(matches("<svg ", in: page).count, 4, "no validation metric charts without metrics")
        let svg = try chart("chart-loss-step")
        let group = matches("data-series=\"train\">([\\s\\S]*?)</g>", in: svg)[0][1]
        XCTAssertEqual(matches("<polyline", in: group).count, 2, "the NaN interval breaks the line")
        assertSeries(try points(svg, series: "train"), [(10, 0.9), (30, 0.7), (40, 0.6)], "finite losses")
        XCTAssertTrue(page.contains("<th>valid @ epoch 1</th>"))
        XCTAssertTrue(page.contains("(no run_end record"))
        XCTAssertEqual(RunReport.finalMetricsText(d), "valid @ epoch 1: loss 0.8000 on 50 samples")
    }

    func testEpochAxesHaveWholeNumberTicks() throws {
        // Five epochs would get ticks 1.0, 1.5, ... 5.0 from the 1-2-5 rule alone.
        var records: [MetricsRecord] = [.runStart(RunStartRecord(time: 0, run: "f", phase: "finetune", worldSize: 1))]
        for e in 1...5 {
            records.append(train(e * 10, epoch: e, loss: 1 / Double(e)))
            records.append(.eval(EvalRecord(time: Double(e), epoch: e, split: "valid", loss: 0.5 / Double(e), samples: 10)))
        }
        page = RunReport.render(RunReportData(records: records), title: "f")
        let ticks = matches("class=\"tick x\" data-v=\"([^\"]+)\"", in: try chart("chart-loss-epoch")).map { Double($0[1])! }
        XCTAssertEqual(ticks, [1, 2, 3, 4, 5])
        let stepTicks = matches("class=\"tick x\" data-v=\"([^\"]+)\"", in: try chart("chart-loss-step")).map { Double($0[1])! }
        XCTAssertEqual(stepTicks.first, 10)
        XCTAssertEqual(stepTicks.last, 50)
    }

    func testConfigurationComesFromConfigYamlWhenTheLogHasNone() throws {
        let dir = NSTemporaryDirectory() + "skesl-report-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try MetricsLog(runDirectory: dir)
        try log.runStart(run: "r", phase: "finetune", worldSize: 2, epochs: 1, stepsPerEpoch: 1, batchSize: 32)
        log.close()
        // No config in the log and no config.yaml: no empty Configuration block.
        XCTAssertFalse(try String(contentsOfFile: RunReport.write(runDirectory: dir).path, encoding: .utf8).contains("Configuration"))
        try "task: finetune\ndata: {textLength: 16}\nnote: <a&b>\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let html = try String(contentsOfFile: RunReport.write(runDirectory: dir).path, encoding: .utf8)
        XCTAssertTrue(html.contains("<h2>Configuration</h2>"))
        XCTAssertTrue(html.contains("task: finetune\ndata: {textLength: 16}\nnote: &lt;a&amp;b&gt;"), "the file, escaped")
        // A config in the log wins over the file.
        XCTAssertFalse(page.contains("config.yaml of the run directory"))
        XCTAssertTrue(page.contains("<h2>Configuration</h2>"))
    }

    // MARK: the command line

    func runSkesl(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [binary, binary.deletingLastPathComponent(), binary.deletingLastPathComponent().deletingLastPathComponent()]
            .map { $0.appendingPathComponent("skesl").path }
        guard let exe = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("skesl executable not built next to the tests (run swift build first)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testReportCommandErrorsAndOutput() throws {
        let missing = try runSkesl(["report", "/nonexistent/run-42"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("/nonexistent/run-42: no such run directory"), missing.err)
        XCTAssertFalse(missing.err.contains("Usage"), "a missing directory is not a usage error")

        let dir = NSTemporaryDirectory() + "skesl-report-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"kind\":\"run_start\"}\n".write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let bad = try runSkesl(["report", dir])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("\(dir)/metrics.jsonl:1: malformed metrics record: missing field \"time\""), bad.err)

        try FileManager.default.removeItem(atPath: dir + "/metrics.jsonl")
        try FileManager.default.copyItem(atPath: Self.fixtureLog, toPath: dir + "/metrics.jsonl")
        let ok = try runSkesl(["report", dir])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.out.contains("Acc-2 non-0") && ok.out.hasSuffix("wrote \(dir)/report.html\n"), ok.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/report.html"))
    }
}
