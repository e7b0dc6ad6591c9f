// Crash drills at every named point of the checkpoint protocol (SKESL_FAULT_KILL_AT, see
// FaultInjection.swift): a fine-tuning run killed there and resumed with --resume auto ends
// with the same final weights, the same best.h5 and the same milestones, bit for bit, as a
// run that was never interrupted.
import XCTest
import CLISupport
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLTraining

final class CrashPointTests: XCTestCase {
    func testEveryCrashPointResumesBitwise() throws {
        let h = try RunHarness("crashpoints")
        try h.synth(samples: 40, labeled: true)
        let cfg = try h.writeConfig(extra: "checkpoint: {milestones: [1, 2, 3, 4], keepLast: 2}")
        func finetune(_ run: String, _ env: [String: String] = [:], resume: Bool = false) throws -> RunResult {
            try h.run(["finetune", "-c", cfg, "--run-dir", h.dir + "/" + run, "--epochs", "4"] + (resume ? ["--resume", "auto"] : []),
                      environment: env)
        }
        let full = try finetune("full")
        XCTAssertEqual(full.status, 0, full.err)
        let ckdir = { (run: String) in h.dir + "/" + run + "/checkpoints" }
        // The step of the last epoch checkpoint that owed both best.h5 and a milestone.
        let log = try MetricsLogReader.read(runDirectory: h.dir + "/full")
        let bestSteps = log.records.compactMap { r -> Int? in
            if case .checkpoint(let c) = r, c.reason == CheckpointReason.best.rawValue { return c.step }
            return nil
        }
        let step = try XCTUnwrap(bestSteps.last, "the full run logged no best checkpoint: \(full.err)")
        let final = try XCTUnwrap(Checkpoint.list(ckdir("full")).first).path
        let finalName = (final as NSString).lastPathComponent
        XCTAssertEqual(try Checkpoint.owedCopies(of: ckdir("full") + "/best.h5").first, "best.h5", "best.h5 records what it was owed as")
        let derived = ["best.h5", "milestone-epoch001.h5", "milestone-epoch002.h5", "milestone-epoch003.h5", "milestone-epoch004.h5"]
        for p in FaultPoint.allCases where p != .step {
            let run = "kill-\(p.rawValue)"
            let cut = try finetune(run, ["SKESL_FAULT_KILL_AT": p.rawValue, "SKESL_FAULT_KILL_AT_STEP": "\(step)"])
            XCTAssertNotEqual(cut.status, 0, "\(p.rawValue): the run was meant to be killed: \(cut.err)")
            XCTAssertTrue(cut.err.contains("SKESL_FAULT_KILL_AT=\(p.rawValue) at step \(step): killing"), "\(p.rawValue): \(cut.err)")
            let resumed = try finetune(run, resume: true)
            XCTAssertEqual(resumed.status, 0, "\(p.rawValue): \(resumed.err)")
            try assertSameWeights(h, ckdir(run) + "/" + finalName, final, "\(p.rawValue): final checkpoint")
            for name in derived {
                let a = ckdir(run) + "/" + name, b = ckdir("full") + "/" + name
                XCTAssertTrue(FileManager.default.fileExists(atPath: a + ".done"), "\(p.rawValue): \(name) has no .done marker")
                try assertSameWeights(h, a, b, "\(p.rawValue): \(name)")
                XCTAssertEqual(try H5File.open(a).attribute("step", as: Int64.self), try H5File.open(b).attribute("step", as: Int64.self),
                               "\(p.rawValue): \(name) holds another step")
            }
            let end = try MetricsLogReader.read(runDirectory: h.dir + "/" + run).records.compactMap { r -> Int? in
                if case .runEnd(let e) = r, e.status == .completed { return e.bestEpoch }
                return nil
            }
            let fullEnd = log.records.compactMap { r -> Int? in if case .runEnd(let e) = r { return e.bestEpoch }; return nil }
            XCTAssertEqual(end, fullEnd, "\(p.rawValue): the best epoch reported")
        }
    }

    private func assertSameWeights(_ h: RunHarness, _ a: String, _ b: String, _ what: String) throws {
        let pa = try h.parameters(a), pb = try h.parameters(b)
        XCTAssertEqual(Set(pa.keys), Set(pb.keys), what)
        for (k, v) in pb where pa[k] != v { XCTFail("\(what): \(k) differs (must be bit-identical)"); return }
    }
}
