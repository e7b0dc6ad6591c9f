// RUN_DIR/report.html from RUN_DIR/metrics.jsonl: one self-contained page (inline CSS and
// SVG, no scripts, no external assets) with the run's summary, the final metrics table,
// plots of loss, learning rates, throughput and validation metrics, a per-epoch table,
// checkpoints and the configuration.
import Foundation

public enum RunReport {
    public static let fileName = "report.html"

    /// Reads the run's log and writes its report; returns the report's path and what it was
    /// made of (whose `warnings` tell of e.g. a cut-off last line).
    @discardableResult
    public static func write(runDirectory: String) throws -> (path: String, data: RunReportData) {
        let contents = try MetricsLogReader.read(runDirectory: runDirectory)
        let data = RunReportData(records: contents.records, warnings: contents.warnings)
        let name = URL(fileURLWithPath: runDirectory).standardizedFileURL.lastPathComponent
        // The trainer writes the resolved configuration next to the log; shown when the
        // run_start record carries none.
        let configFile = try? String(contentsOfFile: (runDirectory as NSString).appendingPathComponent("config.yaml"), encoding: .utf8)
        let page = render(data, title: data.runStart?.run ?? name, configFile: configFile)
        let path = (runDirectory as NSString).appendingPathComponent(fileName)
        do {
            try page.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw MetricsLogError.writeFailed(path, "\(error.localizedDescription); check the run directory is writable")
        }
        return (path, data)
    }

    /// The final metrics for a terminal (e.g. after `skesl report`), "" when none were logged.
    public static func finalMetricsText(_ d: RunReportData) -> String {
        let columns = d.finalColumns()
        let withMetrics = columns.compactMap { c in c.1.metrics.map { (c.0, $0) } }
        if !withMetrics.isEmpty { return MetricsTable.render(withMetrics) }
        return columns.map { "\($0.0): loss \(MetricsTable.formatFigure($0.1.loss)) on \($0.1.samples) samples" }
            .joined(separator: "\n")
    }

    public static func render(_ d: RunReportData, title: String, configFile: String? = nil) -> String {
        var body = "<h1>Run report: \(htmlEscape(title))</h1>\n"
        body += summary(d)
        body += finalTable(d)
        for chart in charts(d) { body += "<section class=\"plot\">\n" + chart.svg() + "\n</section>\n" }
        body += epochTable(d)
        body += stepTimeTable(d)
        body += checkpointTable(d)
        body += configuration(d, configFile: configFile)
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(htmlEscape(title)) - skesl run report</title>
        <style>\(css)</style></head>
        <body>
        \(body)<footer>Written by skesl report from metrics.jsonl.</footer>
        </body></html>

        """
    }

    static let css = """
    body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1080px;color:#222;padding:0 16px}
    h1{font-size:24px;margin:0 0 12px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
    table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
    th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
    table.summary td{text-align:left} tr.best td{background:#fff4cc;font-weight:600}
    .status-completed{color:#1a7f37;font-weight:600} .status-failed,.status-interrupted,.status-running{color:#b42318;font-weight:600}
    .warn{background:#fff4cc;border-left:4px solid #e0a800;padding:6px 10px;font-size:13px}
    section.plot{margin:18px 0} svg.chart{width:100%;height:auto;font-size:12px;background:#fff}
    svg .chart-title{font-size:15px;font-weight:600} svg .grid line{stroke:#e8e8e8;stroke-width:1}
    svg .axes rect{stroke:#444;stroke-width:1} svg .axis-label{font-size:13px} svg .note{font-size:12px;fill:#666}
    svg text{fill:#222} pre{background:#f7f7f7;padding:10px;font-size:12px;overflow-x:auto}
    .wide{overflow-x:auto} footer{color:#888;font-size:12px;margin-top:30px}
    """

    // MARK: summary

    static func summary(_ d: RunReportData) -> String {
        var rows: [(String, String)] = []
        let s = d.runStart
        if let s {
            rows.append(("Phase", htmlEscape(s.phase)))
            rows.append(("Started", htmlEscape(isoDate(s.time))))
            rows.append(("World size", "\(s.worldSize) rank\(s.worldSize == 1 ? "" : "s")"))
            if let b = s.batchSize { rows.append(("Global batch", "\(b)")) }
        }
        let status = d.runEnd?.status.rawValue ?? "running"
        var statusText = "<span class=\"status-\(htmlEscape(status))\">\(htmlEscape(status))</span>"
        if d.runEnd == nil { statusText += " (no run_end record: still running, or stopped without one)" }
        if let msg = d.runEnd?.message { statusText += ": " + htmlEscape(msg) }
        rows.append(("Status", statusText))
        let epochsDone = d.runEnd?.epochs ?? d.epochs.last ?? 0
        rows.append(("Epochs", "\(epochsDone)" + (s?.epochs.map { " of \($0)" } ?? "")))
        if let steps = d.runEnd?.steps ?? d.train.last?.step { rows.append(("Optimizer steps", "\(steps)")) }
        if let e = d.elapsedSeconds { rows.append(("Elapsed", ProgressReporter.formatDuration(e))) }
        if let best = d.bestEpoch { rows.append(("Best epoch (lowest valid loss)", "\(best)")) }
        rows.append(("Skipped samples", "\(d.skippedSamples)"))
        if !d.resumes.isEmpty {
            let from = d.resumes.map { r in r.resumedFromEpoch.map { "epoch \($0)" } ?? "start" }
            rows.append(("Resumed", "\(d.resumes.count) time(s), from " + from.joined(separator: ", ")))
        }
        var out = "<h2>Summary</h2>\n"
        for w in d.warnings { out += "<p class=\"warn\">\(htmlEscape(w))</p>\n" }
        for (k, n) in d.unknownKinds.sorted(by: { $0.key < $1.key }) {
            out += "<p class=\"warn\">\(n) record(s) of unknown kind \"\(htmlEscape(k))\" were not shown.</p>\n"
        }
        out += "<table class=\"summary\">\n"
        for (k, v) in rows { out += "<tr><th>\(k)</th><td>\(v)</td></tr>\n" }
        return out + "</table>\n"
    }

    // MARK: final metrics

    static func finalTable(_ d: RunReportData) -> String {
        let columns = d.finalColumns()
        var out = "<h2>Final metrics</h2>\n"
        guard !columns.isEmpty else { return out + "<p>No evaluation was logged.</p>\n" }
        out += "<table class=\"final\" id=\"final-metrics\">\n<tr><th>metric</th>"
        out += columns.map { "<th>\(htmlEscape($0.0))</th>" }.joined() + "</tr>\n"
        out += "<tr><td>loss</td>" + columns.map { "<td>\(MetricsTable.formatFigure($0.1.loss))</td>" }.joined() + "</tr>\n"
        if let template = columns.compactMap({ $0.1.metrics }).first {
            for (i, named) in template.namedValues.enumerated() {
                out += "<tr><td>\(named.label)</td>" + columns.map { c in
                    "<td>\(c.1.metrics.map { MetricsTable.formatFigure($0.namedValues[i].value) } ?? "")</td>"
                }.joined() + "</tr>\n"
            }
        }
        out += "<tr><td>samples</td>" + columns.map { "<td>\($0.1.samples)</td>" }.joined() + "</tr>\n"
        return out + "</table>\n"
    }

    // MARK: charts

    static func charts(_ d: RunReportData) -> [LineChart] {
        var charts: [LineChart] = []
        var lossSeries = [ChartSeries(name: "train (epoch mean)",
                                      points: d.trainLossPerEpoch().map { (Double($0.epoch), $0.loss) })]
        for split in d.splits {
            lossSeries.append(ChartSeries(name: split, points: d.series(split: split).map { (Double($0.epoch), $0.loss) },
                                          dashed: split == "test"))
        }
        charts.append(LineChart(id: "chart-loss-epoch", title: "Loss per epoch", xLabel: "epoch", yLabel: "loss",
                                series: lossSeries, integerX: true))
        charts.append(LineChart(id: "chart-loss-step", title: "Training loss per logged interval", xLabel: "optimizer step",
                                yLabel: "loss", series: [ChartSeries(name: "train", points: d.train.map { (Double($0.step), $0.loss) })]))

        let groups = Array(Set(d.train.flatMap { $0.lr.keys })).sorted()
        let lrSeries = groups.map { g in
            ChartSeries(name: g, points: d.train.compactMap { t in t.lr[g].map { (Double(t.step), $0) } })
        }
        let positive = lrSeries.flatMap { $0.points.map(\.y) }.filter { $0 > 0 && $0.isFinite }
        let useLog = (positive.max() ?? 0) > 20 * (positive.min() ?? .infinity)
        let hasZero = lrSeries.contains { $0.points.contains { $0.y == 0 } }
        charts.append(LineChart(id: "chart-lr", title: "Learning rate per parameter group", xLabel: "optimizer step",
                                yLabel: "learning rate" + (useLog ? " (log scale)" : ""), series: lrSeries, logY: useLog,
                                note: useLog && hasZero ? "zero learning rates are not drawn on a log scale" : nil))
        charts.append(LineChart(id: "chart-throughput", title: "Throughput", xLabel: "optimizer step", yLabel: "samples/s",
                                series: [ChartSeries(name: "samples/s", points: d.train.map { (Double($0.step), $0.samplesPerSecond) })]))

        let valid = d.series(split: "valid").filter { $0.metrics != nil }
        if !valid.isEmpty {
            func metricSeries(_ key: String) -> ChartSeries {
                let label = valid[0].metrics!.namedValues.first { $0.key == key }!.label
                return ChartSeries(name: label, points: valid.map { e in
                    (Double(e.epoch), e.metrics!.namedValues.first { $0.key == key }!.value)
                })
            }
            charts.append(LineChart(id: "chart-valid-error", title: "Validation MAE and correlation per epoch",
                                    xLabel: "epoch", yLabel: "value", series: [metricSeries("mae"), metricSeries("corr")],
                                    integerX: true))
            charts.append(LineChart(id: "chart-valid-accuracy", title: "Validation accuracy and F1 per epoch",
                                    xLabel: "epoch", yLabel: "fraction",
                                    series: ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5"].map(metricSeries),
                                    integerX: true))
        }
        return charts
    }

    // MARK: tables

    static func epochTable(_ d: RunReportData) -> String {
        let trainLoss = Dictionary(uniqueKeysWithValues: d.trainLossPerEpoch().map { ($0.epoch, $0.loss) })
        let splits = d.splits
        let withMetrics = Set(splits.filter { s in d.evals[s]!.values.contains { $0.metrics != nil } })
        let metricKeys = ["mae", "corr", "acc2_non0", "f1_non0", "acc7"]
        var out = "<h2>Per epoch</h2>\n<div class=\"wide\"><table class=\"epochs\" id=\"epoch-table\">\n<tr><th>epoch</th><th>train loss</th>"
        for s in splits {
            out += "<th>\(htmlEscape(s)) loss</th>"
            if withMetrics.contains(s) {
                out += ["MAE", "Corr", "Acc-2 non-0", "F1 non-0", "Acc-7"].map { "<th>\(htmlEscape(s)) \($0)</th>" }.joined()
            }
        }
        out += "</tr>\n"
        let best = d.bestEpoch
        for epoch in d.epochs {
            out += "<tr\(epoch == best ? " class=\"best\"" : "")><td>\(epoch)</td><td>\(trainLoss[epoch].map(MetricsTable.formatFigure) ?? "")</td>"
            for s in splits {
                let e = d.evals[s]?[epoch]
                out += "<td>\(e.map { MetricsTable.formatFigure($0.loss) } ?? "")</td>"
                if withMetrics.contains(s) {
                    let named = e?.metrics?.namedValues
                    for k in metricKeys {
                        out += "<td>\(named?.first { $0.key == k }.map { MetricsTable.formatFigure($0.value) } ?? "")</td>"
                    }
                }
            }
            out += "</tr>\n"
        }
        return out + "</table></div>\n"
    }

    /// The last run's step_times record: mean ms per step by part, min / median / max over the ranks.
    static func stepTimeTable(_ d: RunReportData) -> String {
        guard let t = d.stepTimes else { return "" }
        var out = "<h2>Step time by part</h2>\n<p>Mean per step over \(t.steps) steps, over \(t.worldSize) rank(s); imbalance "
            + (t.imbalance == "barrier" ? "measured with a barrier" : "estimated from the ranks' ready times") + " (docs/metrics-log.md).</p>\n"
        out += "<table>\n<tr><th>part</th><th>min ms</th><th>median ms</th><th>max ms</th><th>share of the median step</th></tr>\n"
        let med = max(t.stepSeconds.median, 1e-12)
        for n in StepBreakdown.partNames {
            guard let p = t.parts[n] else { continue }
            out += String(format: "<tr><td>%@</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.1f%%</td></tr>\n",
                          n, 1e3 * p.min, 1e3 * p.median, 1e3 * p.max, 100 * p.median / med)
        }
        out += String(format: "<tr><td>step</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td></td></tr>\n",
                      1e3 * t.stepSeconds.min, 1e3 * t.stepSeconds.median, 1e3 * t.stepSeconds.max)
        if let c = t.cpu {
            // Whether the ranks kept their CPUs while they computed (StepTimesRecord.CPUUse).
            out += String(format: "<tr><td>on CPU in forward + backward</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td></td></tr>\n",
                          100 * c.computeOnCPU.min, 100 * c.computeOnCPU.median, 100 * c.computeOnCPU.max)
            out += String(format: "<tr><td>preempted in forward + backward, per step</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td></td></tr>\n",
                          c.preemptions.min, c.preemptions.median, c.preemptions.max)
            out += String(format: "<tr><td>other threads' CPU in forward + backward, ms per step</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td></td></tr>\n",
                          1e3 * c.otherThreads.min, 1e3 * c.otherThreads.median, 1e3 * c.otherThreads.max)
            if let q = c.throttled {
                out += String(format: "<tr><td>held back by the control group's CPU quota, ms per step</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td></td></tr>\n",
                              1e3 * q.min, 1e3 * q.median, 1e3 * q.max)
            }
        }
        return out + "</table>\n"
    }

    static func checkpointTable(_ d: RunReportData) -> String {
        guard !d.checkpoints.isEmpty else { return "" }
        var out = "<h2>Checkpoints</h2>\n<table>\n<tr><th>path</th><th>reason</th><th>epoch</th><th>step</th><th>size</th></tr>\n"
        for c in d.checkpoints {
            let size = c.bytes.map { String(format: "%.1f MB", Double($0) / 1e6) } ?? ""
            out += "<tr><td>\(htmlEscape(c.path))</td><td>\(htmlEscape(c.reason))</td><td>\(c.epoch)</td><td>\(c.step)</td><td>\(size)</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static func configuration(_ d: RunReportData, configFile: String?) -> String {
        guard let s = d.runStart else { return "" }
        var out = ""
        if s.config != .object([:]) && s.config != .null {
            out = "<h2>Configuration</h2>\n<pre>\(htmlEscape(s.config.pretty()))</pre>\n"
        } else if let f = configFile, !f.isEmpty {
            out = "<h2>Configuration</h2>\n<p>config.yaml of the run directory:</p>\n<pre>\(htmlEscape(f))</pre>\n"
        }
        if !s.versions.isEmpty {
            out += "<h2>Versions</h2>\n<table class=\"summary\">\n"
            for (k, v) in s.versions.sorted(by: { $0.key < $1.key }) {
                out += "<tr><th>\(htmlEscape(k))</th><td>\(htmlEscape(v))</td></tr>\n"
            }
            out += "</table>\n"
        }
        return out
    }

    static func isoDate(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}
