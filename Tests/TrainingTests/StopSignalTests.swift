// Stop requests as launchers send them (docs/cluster.md, "Signals"; docs/checkpoint-format.md,
// "Stopping"): the rules on their own, then SIGTERM and SIGUSR1 sent to mpirun (through
// Cluster/launch.sh) during a step that lasts longer than 2 s, each followed by a resume that
// must end bit-identical to an uninterrupted run. The long step is the stall drill
// (SKESL_TEST_STALL_AT_STEP), so nothing depends on catching a moment of a fast run.
import XCTest
import CLISupport
import Foundation
import SKESLReporting
import SKESLTraining

final class StopRequestTests: XCTestCase {
    func testSlurmsTimeLimitBurstIsOneRequest() {
        // Slurm at a time limit (measured): SIGTERM, SIGCONT, SIGTERM within 17 ms. SIGCONT
        // never reaches the rules (it is not a stop signal); the two SIGTERMs are one request.
        XCTAssertFalse(StopSignal.signals.contains(SIGCONT))
        var r = StopRequests(coalesceSeconds: 2, graceSeconds: 30)
        XCTAssertEqual(r.receive(SIGTERM, at: 100), [.writeNow])
        XCTAssertEqual(r.receive(SIGTERM, at: 100.017), [])
        XCTAssertEqual(r.level, .now)
        XCTAssertNil(r.forcedExit)
    }

    func testUSR1AndINTStopAtTheEndOfTheStep() {
        var r = StopRequests()
        XCTAssertEqual(r.receive(SIGUSR1, at: 5), [])
        XCTAssertEqual(r.level, .endOfStep)
        var i = StopRequests()
        XCTAssertEqual(i.receive(SIGINT, at: 5), [])
        XCTAssertEqual(i.level, .endOfStep)
        // A SIGTERM in the same burst makes it a write-now request.
        XCTAssertEqual(i.receive(SIGTERM, at: 5.5), [.writeNow])
        XCTAssertEqual(i.level, .now)
    }

    func testASecondRequestWritesNowAndForcesAnExitOnlyAfterTheGrace() {
        // SIGUSR1 ahead of the limit, then the limit's SIGTERM a minute later: write now, and
        // leave 30 s before the forced exit.
        var r = StopRequests(coalesceSeconds: 2, graceSeconds: 30)
        XCTAssertEqual(r.receive(SIGUSR1, at: 0), [])
        XCTAssertEqual(r.receive(SIGTERM, at: 60), [.writeNow, .forceExit(at: 90, code: 128 + SIGTERM)])
        // More requests keep the first deadline.
        XCTAssertEqual(r.receive(SIGINT, at: 70), [.forceExit(at: 90, code: 128 + SIGTERM)])
        // SIGTERM twice, 5 s apart: the write is already owed, only the deadline is new.
        var t = StopRequests(coalesceSeconds: 2, graceSeconds: 10)
        XCTAssertEqual(t.receive(SIGTERM, at: 0), [.writeNow])
        XCTAssertEqual(t.receive(SIGTERM, at: 5), [.forceExit(at: 15, code: 128 + SIGTERM)])
    }
}

final class StopGraceTests: XCTestCase {
    /// One process, step 3 stalled for an hour: the first SIGTERM saves step 2 at once; a
    /// second one 1 s later (a new request, not part of the burst) does not end the process
    /// at once but after the grace period (SKESL_STOP_GRACE_SECONDS=2), with 128 + SIGTERM.
    func testASecondSIGTERMExitsOnlyAfterTheGracePeriod() throws {
        let h = try RunHarness("stop-grace")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: h.binary)
        p.arguments = ["pretrain", "-c", cfg, "--run-dir", h.dir + "/run"]
        var env = ProcessInfo.processInfo.environment.filter { k, _ in
            !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_", "PRTE_"].contains { k.hasPrefix($0) }
        }
        env["SKESL_TEST_STALL_AT_STEP"] = "3"
        env["SKESL_STOP_GRACE_SECONDS"] = "2"
        p.environment = env
        let errPath = h.dir + "/grace.err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func waitFor(_ text: String) throws {
            let t0 = Date()
            while !((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").contains(text) {
                guard Date().timeIntervalSince(t0) < 120, p.isRunning else {
                    throw RunHarness.HarnessError("never printed '\(text)': \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
                }
                usleep(20_000)
            }
        }
        try waitFor("step 3 stalls")
        kill(p.processIdentifier, SIGTERM)
        try waitFor("interrupted: step 2 saved")
        usleep(3_000_000)   // more than the 2 s that make one burst
        XCTAssertTrue(p.isRunning, "the stalled step keeps the process until a second request's grace is over")
        let second = Date()
        kill(p.processIdentifier, SIGTERM)
        while p.isRunning && Date().timeIntervalSince(second) < 60 { usleep(20_000) }
        let waited = Date().timeIntervalSince(second)
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        XCTAssertEqual(p.terminationReason, .exit, err)
        XCTAssertEqual(p.terminationStatus, 128 + SIGTERM, err)
        XCTAssertGreaterThanOrEqual(waited, 1.9, "exited before the grace period: \(err)")
        XCTAssertTrue(err.contains("SIGTERM again: exiting in 2 s"), err)
        XCTAssertEqual(Checkpoint.list(h.dir + "/run/checkpoints").first?.step, 2)
    }
}

final class StopUnderMPIRunTests: XCTestCase {
    let launchScript = RunHarness.repositoryRoot + "/Cluster/launch.sh"
    /// Seconds between Open MPI's steps (SIGCONT, SIGTERM, SIGKILL) in these tests; the
    /// launcher's default is 20 (checked below), shortened here to keep the test quick.
    let grace = 4

    func launcher(np: Int = 2) -> [String] {
        [launchScript, "-n", "\(np)", "--oversubscribe", "--kill-grace", "\(grace)", "--mca", "btl", "self,vader,tcp"]
    }

    func testLaunchScriptGivesRanksTimeBeforeSIGKILL() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: launchScript)
        p.arguments = ["--dry-run", "-n", "2", "--exe", "/bin/true", "--", "x"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run(); p.waitUntilExit()
        let line = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(line.contains("--mca odls_base_sigkill_timeout 20"), line)
    }

    /// The reference: the same run, never interrupted.
    func reference(_ h: RunHarness, _ cfg: String, _ common: [String]) throws -> [String: [Float]] {
        let full = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/full"] + common, np: 2)
        XCTAssertEqual(full.status, 0, full.err)
        return try h.parameters(h.checkpoint(step: 12, run: "full"))
    }

    func lastRunEnd(_ runDir: String) throws -> RunEndRecord? {
        for r in try MetricsLogReader.read(runDirectory: runDir).records.reversed() {
            if case .runEnd(let e) = r { return e }
        }
        return nil
    }

    func resumeAndCompare(_ h: RunHarness, _ cfg: String, _ common: [String], ref: [String: [Float]]) throws {
        let resumed = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/cut"] + common, np: 2)
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("resumed from"), resumed.err)
        let p = try h.parameters(h.checkpoint(step: 12, run: "cut"))
        XCTAssertEqual(Set(p.keys), Set(ref.keys))
        for (k, v) in ref { XCTAssertEqual(p[k]!, v, "\(k) differs after resume (must be bit-identical)") }
    }

    /// SIGTERM to mpirun while step 3 runs for an hour: rank 0 writes step 2's state as soon
    /// as its SIGTERM arrives (Open MPI forwards it `grace` s after mpirun gets it) and records
    /// run_end; Open MPI's SIGKILL then ends the ranks mid-step. The resume is bit-identical.
    func testSIGTERMToMpirunDuringALongStepWritesTheLastCompletedStep() throws {
        let h = try RunHarness("stop-term")
        try h.synth(samples: 30)
        // No periodic checkpoints: the one for the stop must be written by the signal.
        let cfg = try h.writeConfig()
        let common = ["--max-steps", "12", "--epochs", "20"]
        let ref = try reference(h, cfg, common)
        let errFile = { () -> String in
            // The harness writes stderr to err-<uuid> files in h.dir; the stall line names step 3.
            let files = (try? FileManager.default.contentsOfDirectory(atPath: h.dir)) ?? []
            return files.filter { $0.hasPrefix("err-") }.compactMap { try? String(contentsOfFile: h.dir + "/" + $0, encoding: .utf8) }.joined()
        }
        let cut = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/cut"] + common,
                            environment: ["SKESL_TEST_STALL_AT_STEP": "3"], launcher: launcher(), signal: SIGTERM) {
            errFile().contains("rank 0: SKESL_TEST_STALL_AT_STEP=3: step 3 stalls")
        }
        XCTAssertNotEqual(cut.status, 0, "the ranks were meant to be killed in the stalled step: \(cut.err)")
        XCTAssertTrue(cut.err.contains("rank 0: SIGTERM: writing the last completed step's checkpoint now"), cut.err)
        XCTAssertTrue(cut.err.contains("interrupted: step 2 saved"), cut.err)
        let newest = Checkpoint.list(h.dir + "/cut/checkpoints").first
        XCTAssertEqual(newest?.step, 2, "the checkpoint holds the last completed step")
        XCTAssertEqual(newest?.complete, true)
        XCTAssertFalse((try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/cut/checkpoints"))?.contains { $0.hasSuffix(".tmp") } ?? true)
        let end = try lastRunEnd(h.dir + "/cut")
        XCTAssertEqual(end?.status, .interrupted)
        XCTAssertEqual(end?.steps, 2)
        try resumeAndCompare(h, cfg, common, ref: ref)
    }

    /// train.shardOptimizer: rank 0 holds only its shard of the moments, so a SIGTERM cannot
    /// be answered by rank 0 alone; the ranks finish the step in progress (a 10 s stall here), drop it
    /// at their agreement, gather the moments and write the last completed step, within the
    /// launcher's kill grace. The resume is bit-identical.
    func testSIGTERMWithShardedOptimizerWritesAtTheStepsAgreement() throws {
        try sigtermDuringAStalledStep("stop-term-zero1", ["--set", "train.shardOptimizer=true"], sharded: true)
    }

    /// The same with the shared-memory gradient sum: the rank that is not stalled waits in
    /// the sum's spin (outside MPI) and must still reach the agreement and stop there.
    func testSIGTERMWithSharedMemorySumWritesAtTheStepsAgreement() throws {
        try sigtermDuringAStalledStep("stop-term-shm", ["--set", "train.allreduce=shm"], sharded: false)
    }

    private func sigtermDuringAStalledStep(_ name: String, _ extra: [String], sharded: Bool,
                                           file: StaticString = #filePath, line: UInt = #line) throws {
        let h = try RunHarness(name)
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let common = ["--max-steps", "12", "--epochs", "20"] + extra
        let ref = try reference(h, cfg, common)
        let errText = { () -> String in
            let files = (try? FileManager.default.contentsOfDirectory(atPath: h.dir)) ?? []
            return files.filter { $0.hasPrefix("err-") }.compactMap { try? String(contentsOfFile: h.dir + "/" + $0, encoding: .utf8) }.joined()
        }
        // Open MPI forwards the SIGTERM G s after mpirun gets it and sends SIGKILL G s later.
        // The stall (S s, from the line the test waits for) must outlast the first wait and end
        // well before the second: G + polling < S < 2G - the write. G = 6, S = 10 leaves 4 s
        // for the test's polling and 2 s (plus that polling) for the agreement and the write.
        let slowKill = [launchScript, "-n", "2", "--oversubscribe", "--kill-grace", "6", "--mca", "btl", "self,vader,tcp"]
        let cut = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/cut"] + common,
                            environment: ["SKESL_TEST_STALL_AT_STEP": "3", "SKESL_TEST_STALL_SECONDS": "10"],
                            launcher: slowKill, signal: SIGTERM) {
            errText().contains("rank 0: SKESL_TEST_STALL_AT_STEP=3: step 3 stalls")
        }
        if sharded { XCTAssertTrue(cut.err.contains("the optimiser state is sharded"), cut.err, file: file, line: line) }
        XCTAssertTrue(cut.out.contains("pretrain interrupted"), cut.out + cut.err, file: file, line: line)
        let newest = Checkpoint.list(h.dir + "/cut/checkpoints").first
        XCTAssertEqual(newest?.step, 2, "step 3 is dropped at the agreement; the checkpoint holds step 2", file: file, line: line)
        XCTAssertEqual(newest?.complete, true, file: file, line: line)
        XCTAssertEqual(try lastRunEnd(h.dir + "/cut")?.status, .interrupted, file: file, line: line)
        try resumeAndCompare(h, cfg, common, ref: ref)
    }

    /// SIGUSR1 to mpirun (forwarded at once) during a 3 s step: the step finishes, its
    /// checkpoint is written, every rank stops cleanly and mpirun exits 0.
    func testSIGUSR1ToMpirunStopsAtTheEndOfTheStep() throws {
        let h = try RunHarness("stop-usr1")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let common = ["--max-steps", "12", "--epochs", "20"]
        let ref = try reference(h, cfg, common)
        let errText = { () -> String in
            let files = (try? FileManager.default.contentsOfDirectory(atPath: h.dir)) ?? []
            return files.filter { $0.hasPrefix("err-") }.compactMap { try? String(contentsOfFile: h.dir + "/" + $0, encoding: .utf8) }.joined()
        }
        let cut = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/cut"] + common,
                            environment: ["SKESL_TEST_STALL_AT_STEP": "3", "SKESL_TEST_STALL_SECONDS": "3"],
                            launcher: launcher(), signal: SIGUSR1) {
            errText().contains("rank 0: SKESL_TEST_STALL_AT_STEP=3: step 3 stalls")
        }
        XCTAssertEqual(cut.status, 0, cut.err)
        XCTAssertTrue(cut.err.contains("SIGUSR1: stopping at the end of this step"), cut.err)
        XCTAssertTrue(cut.out.contains("pretrain interrupted"), cut.out)
        // The signal came during step 3 (after its stall began), so the run stopped after
        // step 3, or later only if this test's polling lagged the whole 3 s.
        let newest = Checkpoint.list(h.dir + "/cut/checkpoints").first
        XCTAssertNotNil(newest)
        XCTAssertGreaterThanOrEqual(newest?.step ?? 0, 3)
        XCTAssertLessThan(newest?.step ?? 99, 12, "the run was meant to stop early")
        XCTAssertEqual(try lastRunEnd(h.dir + "/cut")?.status, .interrupted)
        try resumeAndCompare(h, cfg, common, ref: ref)
    }
}
