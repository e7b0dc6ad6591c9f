// `skesl report RUN_DIR`: the run's metrics log as a self-contained HTML report.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLTraining
import SKESLLog

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write RUN_DIR/report.html (plots and tables) from RUN_DIR/metrics.jsonl.",
        discussion: """
        The report is one HTML file with no external assets: open it in any browser. \
        The final metrics (best epoch by validation loss) are also printed here.

        Example: skesl report runs/demo/ft-pretrained      (writes runs/demo/ft-pretrained/report.html)
        """)

    @Argument(help: "The run directory (it holds metrics.jsonl).")
    var runDirectory: String

    @Flag(name: .long, help: "Do not print the final metrics table.")
    var quiet = false

    func run() throws {
        let written: (path: String, data: RunReportData)
        do {
            written = try RunReport.write(runDirectory: runDirectory)
        } catch let error as MetricsLogError {
            throw CommandFailure(error)
        }
        for w in written.data.warnings { Log.warning(w) }
        if !quiet {
            let text = RunReport.finalMetricsText(written.data)
            if !text.isEmpty { print(text) }
        }
        print("wrote \(written.path)")
    }
}
