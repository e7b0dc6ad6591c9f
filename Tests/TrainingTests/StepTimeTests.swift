// The per-rank step-time breakdown (StepTimer): the split of a gradient wait, the summary
// record, and 2-rank runs whose straggler is planted with SKESL_FAULT_SLOW_RANK.
import Foundation
import SKESLReporting
import XCTest
import CLISupport
import SKESLTraining
import SKESLStore

final class StepTimeTests: XCTestCase {
    func testSplitOfTheGradientWait() {
        // Rank ready 0.1 s before the slowest: that much of a 0.15 s wait is imbalance.
        XCTAssertEqual(StepTimer.splitWait(0.15, ready: 0.9, slowest: 1.0), 0.1, accuracy: 1e-12)
        // The slowest rank itself waits only for the all-reduce.
        XCTAssertEqual(StepTimer.splitWait(0.02, ready: 1.0, slowest: 1.0), 0)
        // Never more than the wait (the all-reduce had finished by the time it looked).
        XCTAssertEqual(StepTimer.splitWait(0.05, ready: 0.5, slowest: 1.0), 0.05)
        XCTAssertEqual(StepTimer.splitWait(0.05, ready: 1.2, slowest: 1.0), 0)
    }

    func testSummaryRecordSpreadsAndRoundTrips() throws {
        // 4 ranks: forward 1..4 ms, so min 1, median 2.5 (mean of the middle two), max 4.
        let perRank = (1...4).map { r -> [Double] in
            var v = [Double](repeating: 0, count: StepBreakdown.partNames.count)
            v[1] = Double(r) * 1e-3
            v[3] = Double(4 - r) * 1e-3
            return v
        }
        // CPU: rank r's training thread ran 0.5 ms of its r ms of forward + backward (rank 1: none).
        let cpuPerRank = (1...4).map { r -> [Double] in [Double(r - 1) * 0.5e-3, Double(r), Double(r) * 1e-3] }
        let rec = StepTimesRecord.make(perRank: perRank, cpuPerRank: cpuPerRank, steps: [7, 7, 7, 7], diagnose: false, time: 1)
        XCTAssertEqual(rec.worldSize, 4); XCTAssertEqual(rec.steps, 7); XCTAssertEqual(rec.imbalance, "estimate")
        let cpu = try XCTUnwrap(rec.cpu)
        // On CPU: 0/1, 0.5/2, 1/3, 1.5/4 of forward + backward.
        for (got, want) in zip(cpu.ranks["compute_on_cpu"]!, [0, 0.25, 1.0 / 3, 0.375]) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        XCTAssertEqual(cpu.computeOnCPU.min, 0); XCTAssertEqual(cpu.computeOnCPU.max, 0.375, accuracy: 1e-12)
        XCTAssertEqual(cpu.preemptions.median, 2.5); XCTAssertEqual(cpu.otherThreads.max, 4e-3, accuracy: 1e-15)
        XCTAssertTrue(rec.text.contains("CPU: training thread on its CPU in forward + backward 0.0% / 29.2% / 37.5% of the time"), rec.text)
        XCTAssertTrue(rec.text.contains("preempted there 1.0 / 2.5 / 4.0 times per step, while its other threads ran 1.0 / 2.5 / 4.0 ms"), rec.text)
        // A log written before the CPU was measured still reads (no "cpu" field).
        var old = rec; old.cpu = nil
        let oldLine = try MetricsRecord.stepTimes(old).jsonLine()
        XCTAssertFalse(oldLine.contains("\"cpu\""), oldLine)
        XCTAssertEqual(try MetricsRecord.parse(line: oldLine), .stepTimes(old))
        XCTAssertEqual(rec.parts["forward"]!.min, 1e-3, accuracy: 1e-15)
        XCTAssertEqual(rec.parts["forward"]!.median, 2.5e-3, accuracy: 1e-15)
        XCTAssertEqual(rec.parts["forward"]!.max, 4e-3, accuracy: 1e-15)
        XCTAssertEqual(rec.ranks["imbalance"]!, [3e-3, 2e-3, 1e-3, 0])
        XCTAssertEqual(rec.stepSeconds.median, 4e-3, accuracy: 1e-15)
        let line = try MetricsRecord.stepTimes(rec).jsonLine()
        XCTAssertTrue(line.hasPrefix("{\"kind\":\"step_times\""), line)
        XCTAssertEqual(try MetricsRecord.parse(line: line), .stepTimes(rec))
        XCTAssertTrue(rec.text.contains("forward"), rec.text)
        // The report shows it.
        let html = RunReport.render(RunReportData(records: [.stepTimes(rec)]), title: "t")
        XCTAssertTrue(html.contains("<h2>Step time by part</h2>"), html)
        XCTAssertTrue(html.contains("<tr><td>forward</td><td>1.00</td><td>2.50</td><td>4.00</td>"), html)
        XCTAssertTrue(html.contains("<tr><td>on CPU in forward + backward</td><td>0.0%</td><td>29.2%</td><td>37.5%</td>"), html)
        XCTAssertNil(cpu.throttled, "no quota, no throttled time"); XCTAssertNil(cpu.ranks["throttled_s"])
        XCTAssertFalse(rec.text.contains("quota"), rec.text)
    }

    func testThrottledTimeWhereAQuotaApplies() throws {
        let perRank = (1...3).map { r -> [Double] in
            var v = [Double](repeating: 0, count: StepBreakdown.partNames.count); v[1] = 1e-3 * Double(r); return v
        }
        // Ranks 0 and 2 in groups with a quota (held back 4 and 10 ms per step), rank 1 in none (NaN).
        let cpu = [[1e-3, 0, 0, 4e-3], [2e-3, 0, 0, .nan], [3e-3, 0, 0, 10e-3]]
        let rec = StepTimesRecord.make(perRank: perRank, cpuPerRank: cpu, steps: [5, 5, 5], diagnose: false, time: 1)
        let t = try XCTUnwrap(rec.cpu?.throttled)
        XCTAssertEqual(rec.cpu?.ranks["throttled_s"], [4e-3, 0, 10e-3])
        XCTAssertEqual(t.min, 0); XCTAssertEqual(t.median, 4e-3); XCTAssertEqual(t.max, 10e-3)
        XCTAssertTrue(rec.text.hasSuffix("its control group held back by its CPU quota 0.0 / 4.0 / 10.0 ms per step"), rec.text)
        let line = try MetricsRecord.stepTimes(rec).jsonLine()
        XCTAssertTrue(line.contains(#""throttled_s":{"#), line)
        XCTAssertEqual(try MetricsRecord.parse(line: line), .stepTimes(rec))
        let html = RunReport.render(RunReportData(records: [.stepTimes(rec)]), title: "t")
        XCTAssertTrue(html.contains("<tr><td>held back by the control group's CPU quota, ms per step</td><td>0.00</td><td>4.00</td><td>10.00</td>"), html)
        // No rank with a quota: none.
        XCTAssertNil(StepTimesRecord.make(perRank: perRank, cpuPerRank: cpu.map { Array($0.prefix(3)) + [.nan] }, steps: [5, 5, 5],
                                          diagnose: false, time: 1).cpu?.throttled)
    }

    // MARK: 2 ranks

    struct StepLine: Decodable {
        var step: Int; var rank: Int; var data, forward, backward, imbalance, allreduce, optimizer, other, total: Double
        var compute_cpu: Double; var preempted: Int; var other_threads_cpu: Double
    }

    func stepLines(_ dir: String, rank: Int) throws -> [StepLine] {
        let text = try String(contentsOfFile: dir + String(format: "/step-times/rank-%05d.jsonl", rank), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(StepLine.self, from: Data($0.utf8)) }
    }

    func stepTimes(_ dir: String) throws -> StepTimesRecord {
        let recs = try MetricsLogReader.read(path: dir + "/metrics.jsonl").records
        guard let r = recs.compactMap({ if case .stepTimes(let t) = $0 { return t } else { return nil } }).last else {
            throw RunHarness.HarnessError("no step_times record in \(dir)/metrics.jsonl")
        }
        return r
    }

    /// Rank 1 sleeps 400 ms per step before its gradient wait: rank 0 must show that as
    /// waiting for the slowest rank, not as all-reduce, in both modes. On a loaded machine
    /// rank 0 may itself be descheduled for a while (then rank 1 waits for it), so rank 1's
    /// wait is compared with rank 0's, not with zero.
    func testTwoRanksAttributeAStragglerToImbalance() throws {
        let h = try RunHarness("steptimes")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let slow = ["SKESL_FAULT_SLOW_RANK": "1", "SKESL_FAULT_SLOW_MS": "400"]
        for (name, diagnose) in [("estimate", false), ("barrier", true)] {
            let run = h.dir + "/" + name
            let r = try h.run(["pretrain", "-c", cfg, "--run-dir", run, "--max-steps", "6",
                               "--set", "train.diagnoseImbalance=\(diagnose)"], np: 2, environment: slow)
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertTrue(r.err.contains("step time by part"), r.err)
            XCTAssertTrue(r.err.contains("blas: OpenBLAS core "), r.err)
            let rec = try stepTimes(run)
            XCTAssertEqual(rec.worldSize, 2); XCTAssertEqual(rec.steps, 6)
            XCTAssertEqual(rec.imbalance, diagnose ? "barrier" : "estimate")
            let imb = rec.ranks["imbalance"]!, ar = rec.ranks["allreduce"]!
            XCTAssertGreaterThan(imb[0], 0.25, "\(name): rank 0 waits ~400 ms per step for rank 1: \(rec.text)")
            XCTAssertLessThan(ar[0], imb[0], "\(name): the wait is not the all-reduce: \(rec.text)")
            XCTAssertLessThan(imb[1], 0.25 * imb[0], "\(name): the straggler waits for nobody: \(rec.text)")
            XCTAssertGreaterThan(rec.ranks["other"]![1], 0.38, "\(name): rank 1's sleep is outside every phase: \(rec.text)")
            // The run's verdict names the straggler and the part of its step it lost.
            let verdict = try XCTUnwrap(rec.diagnosis, rec.text)
            XCTAssertTrue(verdict.contains("of the step waiting for the slowest rank, rank 1: its other (logging, checkpoints, evaluation, a planted delay) took"),
                          verdict)
            XCTAssertTrue(r.err.contains("  diagnosis: "), r.err)
            for rank in 0..<2 {
                let lines = try stepLines(run, rank: rank)
                XCTAssertEqual(lines.map(\.step), Array(1...6))
                for l in lines {
                    XCTAssertEqual(l.rank, rank)
                    let parts = l.data + l.forward + l.backward + l.imbalance + l.allreduce + l.optimizer + l.other
                    XCTAssertEqual(parts, l.total, accuracy: 1e-5, "parts add up to the step")
                    XCTAssertGreaterThan(l.forward, 0); XCTAssertGreaterThan(l.backward, 0)
                    XCTAssertGreaterThan(l.optimizer, 0); XCTAssertGreaterThan(l.data, 0)
                    // The training thread cannot run longer than forward + backward took
                    // (the clocks are read a few microseconds apart).
                    XCTAssertGreaterThan(l.compute_cpu, 0)
                    XCTAssertLessThanOrEqual(l.compute_cpu, l.forward + l.backward + 1e-3)
                    XCTAssertGreaterThanOrEqual(l.preempted, 0); XCTAssertGreaterThanOrEqual(l.other_threads_cpu, 0)
                }
                // The same from the lines (written to the microsecond: 6 x 0.5 us on either side of the ratio).
                let wall = lines.map { $0.forward + $0.backward }.reduce(0, +)
                XCTAssertEqual(rec.cpu!.ranks["compute_on_cpu"]![rank], lines.map(\.compute_cpu).reduce(0, +) / wall,
                               accuracy: 1e-5 / wall)
                // The summary is the mean of the per-step lines.
                let mean = lines.map(\.forward).reduce(0, +) / 6
                XCTAssertEqual(rec.ranks["forward"]![rank], mean, accuracy: 2e-6)
            }
            // The steps' totals on rank 0 are the trainer's own step clock (printed by the run).
            let total = try stepLines(run, rank: 0).map(\.total).reduce(0, +)
            let m = try XCTUnwrap(r.err.range(of: #"of ([0-9.]+) s of steps"#, options: .regularExpression))
            let printed = Double(r.err[m].split(separator: " ")[1])!
            XCTAssertEqual(total, printed, accuracy: 0.05 + 0.02 * printed, r.err)
        }
    }

    /// A rank whose CPU is shared with a busy process for the whole run: the record must say
    /// that its training thread lost the CPU while it computed (about half the time on an
    /// otherwise idle CPU; less on a loaded machine), and that it was preempted.
    func testARankThatSharesItsCPUIsSeenLosingIt() throws {
        let h = try RunHarness("steptimes-cpu")
        try h.synth(samples: 40)
        // Steps of about 100 ms of compute (BERT of 2 layers, hidden 256, 32 x 64 tokens): many
        // scheduler time slices, so a shared CPU shows in every step.
        let cfg = try h.writeConfig("big.yaml", bert: "hidden_size: 256, num_hidden_layers: 2, num_attention_heads: 4, "
                                    + "intermediate_size: 1024, max_position_embeddings: 64", textLength: 64, globalBatch: 32)
        let cpu = try XCTUnwrap(RankPlacement.read(rank: 0, threads: 1).cpus.first, "no CPU in this process's affinity")
        let busy = Process()
        busy.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
        busy.arguments = ["-c", "\(cpu)", "/bin/sh", "-c", "while :; do :; done"]
        try busy.run()
        defer { busy.terminate(); busy.waitUntilExit() }
        let r = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/run", "--max-steps", "4"],
                          wrapper: ["/usr/bin/taskset", "-c", "\(cpu)"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(busy.isRunning, "the busy loop ran throughout")
        let rec = try stepTimes(h.dir + "/run")
        let c = try XCTUnwrap(rec.cpu, rec.text)
        XCTAssertLessThan(c.computeOnCPU.max, 0.8, rec.text)
        XCTAssertGreaterThan(c.computeOnCPU.max, 0, rec.text)
        XCTAssertGreaterThan(c.preemptions.max, 0, rec.text)
        XCTAssertTrue(r.err.contains("CPU: training thread on its CPU in forward + backward"), r.err)
    }

    func testOneRankHasNoWaitAndStepLogCanBeOff() throws {
        let h = try RunHarness("steptimes1")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let r = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/run", "--max-steps", "3", "--set", "train.stepTimeLog=false"])
        XCTAssertEqual(r.status, 0, r.err)
        let rec = try stepTimes(h.dir + "/run")
        XCTAssertEqual(rec.worldSize, 1); XCTAssertEqual(rec.steps, 3)
        XCTAssertEqual(rec.ranks["imbalance"]!, [0])
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/run/step-times"))
        // run_start names the kernel and its measured rate.
        let start = try MetricsLogReader.read(path: h.dir + "/run/metrics.jsonl").records.compactMap { rec -> RunStartRecord? in
            if case .runStart(let s) = rec { return s } else { return nil } }.first
        let blas = try XCTUnwrap(start?.blas)
        XCTAssertFalse(blas.core.isEmpty); XCTAssertGreaterThan(blas.sgemmGFLOPs, 0.1)
    }
}
