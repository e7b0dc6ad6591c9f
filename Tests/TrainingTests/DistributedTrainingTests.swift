// The whole training path through the skesl binary: N ranks equal 1 rank with N-way
// accumulation; a run killed with SIGKILL resumes bit-identically; resuming on another
// world size continues the same run; faults end the run clearly with the last good
// checkpoint intact.
import XCTest
import CLISupport
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLTraining
import SKESLStore

final class DistributedTrainingTests: XCTestCase {
    func pretrain(_ h: RunHarness, _ cfg: String, np: Int = 0, run: String = "run", _ extra: [String] = [],
                  environment: [String: String] = [:], signal: Int32 = SIGKILL, when: (() -> Bool)? = nil) throws -> RunResult {
        try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/" + run] + extra, np: np, environment: environment, signal: signal, when: when)
    }

    func testRanksEqualOneRankWithAccumulation() throws {
        let h = try RunHarness("equiv")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let one = try pretrain(h, cfg, run: "one", ["--max-steps", "4", "--micro-batches", "6"])
        XCTAssertEqual(one.status, 0, one.err)
        let ref = try h.parameters(h.checkpoint(step: 4, run: "one"))
        for np in [2, 3] {
            let r = try pretrain(h, cfg, np: np, run: "np\(np)", ["--max-steps", "4", "--micro-batches", "\(6 / np)"])
            XCTAssertEqual(r.status, 0, r.err)
            let p = try h.parameters(h.checkpoint(step: 4, run: "np\(np)"))
            XCTAssertEqual(Set(p.keys), Set(ref.keys))
            XCTAssertLessThan(maxRelativeDifference(p, ref), 1e-5, "\(np) ranks vs 1 rank with accumulation")
            XCTAssertTrue(r.err.contains("gradient sum: MPI all-reduce, deferred progress, buckets of 8.0 MiB (train.allreduce auto: all ranks on one host)"), r.err)
        }
        // The modes with a communication thread (auto's choice across hosts) train the same
        // parameters, bit for bit on 2 ranks (a + b either way).
        let deferred = try h.checkpointState(h.checkpoint(step: 4, run: "np2"))
        for mode in ["poll", "thread"] {
            let r = try pretrain(h, cfg, np: 2, run: mode, ["--max-steps", "4", "--micro-batches", "3", "--set", "train.allreduce=\(mode)"])
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertTrue(r.err.contains("gradient sum: MPI all-reduce, \(mode) progress, buckets of 8.0 MiB\n"), r.err)
            assertSameBits(try h.checkpointState(h.checkpoint(step: 4, run: mode)), deferred, "\(mode) vs deferred on 2 ranks")
        }
        // And training moved the parameters at all.
        let f = try H5File.open(h.checkpoint(step: 4, run: "one"))
        XCTAssertEqual(try f.attribute("step", as: Int64.self), 4)
    }

    func testKilledRunResumesBitIdentically() throws {
        let h = try RunHarness("resume")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2}")
        let steps = "60"
        let full = try pretrain(h, cfg, np: 2, run: "full", ["--max-steps", steps, "--epochs", "20"])
        XCTAssertEqual(full.status, 0, full.err)
        let ref = try h.parameters(h.checkpoint(step: 60, run: "full"))
        // Every rank SIGKILLs itself during step 5 (mid-epoch 0: 5 steps per epoch), after its
        // gradients and before the update, with step 4's checkpoint on disk. The kill comes
        // from inside so that it lands at that step however fast the machine is.
        let cut = try pretrain(h, cfg, np: 2, run: "cut", ["--max-steps", steps, "--epochs", "20"],
                               environment: ["SKESL_FAULT_KILL_AT_STEP": "5"])
        XCTAssertNotEqual(cut.status, 0, "the run was meant to be killed: \(cut.err)")
        XCTAssertTrue(cut.err.contains("SKESL_FAULT_KILL_AT_STEP=5: killing this rank"), cut.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: h.checkpoint(step: 4, run: "cut") + ".done"), cut.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.checkpoint(step: 6, run: "cut")), "killed too late")
        let resumed = try pretrain(h, cfg, np: 2, run: "cut", ["--max-steps", steps, "--epochs", "20", "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("resumed from"), resumed.err)
        let p = try h.parameters(h.checkpoint(step: 60, run: "cut"))
        XCTAssertEqual(Set(p.keys), Set(ref.keys))
        for (k, v) in ref { XCTAssertEqual(p[k]!, v, "\(k) differs after resume (must be bit-identical)") }
    }

    func testElasticResumeOnAnotherWorldSize() throws {
        let h = try RunHarness("elastic")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 3}")
        let full = try pretrain(h, cfg, np: 2, run: "full", ["--max-steps", "7"])
        XCTAssertEqual(full.status, 0, full.err)
        let ref = try h.parameters(h.checkpoint(step: 7, run: "full"))
        let first = try pretrain(h, cfg, np: 2, run: "el", ["--max-steps", "3"])
        XCTAssertEqual(first.status, 0, first.err)
        // Continue on 3 ranks, then on 1.
        let mid = try pretrain(h, cfg, np: 3, run: "el", ["--max-steps", "5"])
        XCTAssertEqual(mid.status, 0, mid.err)
        XCTAssertTrue(mid.err.contains("written by 2 ranks, continuing on 3"), mid.err)
        let last = try pretrain(h, cfg, run: "el", ["--max-steps", "7"])
        XCTAssertEqual(last.status, 0, last.err)
        let p = try h.parameters(h.checkpoint(step: 7, run: "el"))
        XCTAssertLessThan(maxRelativeDifference(p, ref), 1e-5)
    }

    func testSigtermWritesAFinalCheckpoint() throws {
        let h = try RunHarness("sigterm")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2}")
        // SIGTERM once some checkpoint is complete (a condition that stays true: the files of
        // a given step are pruned within milliseconds, too fast for the harness's polling).
        let r = try pretrain(h, cfg, ["--epochs", "5000"], signal: SIGTERM) {
            Checkpoint.list(h.dir + "/run/checkpoints").contains { $0.complete }
        }
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertFalse(r.out.contains("pretrain completed"), "the run was meant to be interrupted: \(r.out)")
        XCTAssertTrue(r.out.contains("pretrain interrupted"), r.out + r.err)
        let newest = Checkpoint.list(h.dir + "/run/checkpoints").first
        XCTAssertNotNil(newest)
        XCTAssertTrue(newest!.complete)
        XCTAssertGreaterThanOrEqual(newest!.step, 2)
        XCTAssertTrue(r.out.contains(newest!.path), r.out)
    }

    /// Shards are read through memory mappings, where a truncated file or a disk error
    /// arrives as SIGBUS: the run ends with a message saying what happened and what to do.
    func testBusErrorFromAMappedStoreFileIsExplained() throws {
        let h = try RunHarness("sigbus")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let marker = h.dir + "/run/metrics.jsonl"
        let r = try pretrain(h, cfg, ["--epochs", "5000"], signal: SIGBUS) { FileManager.default.fileExists(atPath: marker) }
        XCTAssertEqual(r.status, 135, r.err)
        XCTAssertTrue(r.err.contains("bus error reading a memory-mapped store file") && r.err.contains("skesl store verify"), r.err)
        XCTAssertFalse(r.err.contains("Fatal error") || r.err.contains("Stack dump"), r.err)
        // The real fault: every shard truncated under the running job (rows stored one per
        // chunk, as at reference shapes, so that they are read from the mapping).
        let s = try h.run(["synth", "--out", h.dir + "/store", "--samples", "30", "--audio-frames", "6", "--audio-dim", "5",
                           "--video-frames", "4", "--video-dim", "7", "--samples-per-shard", "13", "--seed", "3", "--overwrite",
                           "--chunk-bytes", "1"])
        XCTAssertEqual(s.status, 0, s.err)
        // (With the frozen-BERT cache the loader reads no transcripts, only mapped rows.)
        /// Once `run` is under way, cuts every shard file of the store to 4 KB.
        func truncateShards(once run: String) -> () -> Bool {
            return {
                guard FileManager.default.fileExists(atPath: h.dir + "/" + run + "/metrics.jsonl") else { return false }
                for f in (try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/store")) ?? [] where f.hasSuffix(".h5") {
                    truncate(h.dir + "/store/" + f, 4096)
                }
                return true
            }
        }
        let t = try pretrain(h, cfg, run: "trunc", ["--epochs", "5000", "--set", "data.bertCache=true"], signal: 0,
                             when: truncateShards(once: "trunc"))
        XCTAssertEqual(t.status, 135, t.err)
        XCTAssertTrue(t.err.contains("bus error reading a memory-mapped store file"), t.err)
        // Rows read through HDF5 (a store without a row table, several rows to a chunk):
        // HDF5 would read zeros past the new end of the file, and zeros pass Fletcher32;
        // the size check stops the run instead.
        try h.synth(samples: 30)
        try FileManager.default.removeItem(atPath: h.dir + "/store/" + RowTableFormat.fileName)
        let z = try pretrain(h, cfg, run: "trunc-hdf5", ["--epochs", "5000"], signal: 0, when: truncateShards(once: "trunc-hdf5"))
        XCTAssertNotEqual(z.status, 0, z.err)
        XCTAssertTrue(z.err.contains("truncated or replaced while this run was reading it"), z.err)
        XCTAssertLessThan(z.seconds, 60)
    }

    func testADyingRankEndsTheJobPromptly() throws {
        let h = try RunHarness("dying")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        // Rank 1 alone SIGKILLs itself during step 3; rank 0 is then waiting in the gradient
        // all-reduce, and mpirun must end the job rather than leave it hanging.
        let r = try pretrain(h, cfg, np: 2, ["--epochs", "5000"],
                             environment: ["SKESL_FAULT_KILL_AT_STEP": "3", "SKESL_FAULT_KILL_RANK": "1"])
        XCTAssertTrue(r.err.contains("rank 1: SKESL_FAULT_KILL_AT_STEP=3: killing this rank"), r.err)
        XCTAssertFalse(r.err.contains("rank 0: SKESL_FAULT_KILL_AT_STEP"), r.err)
        XCTAssertNotEqual(r.status, 0, "the job must fail when a rank dies")
        XCTAssertLessThan(r.seconds, 120)
    }

    func testNonFiniteLossStopsWithStepAndSamples() throws {
        let h = try RunHarness("nan")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 1}")
        // Finite but enormous audio features in one sample (row 5 of the first shard, global
        // id 5): its LayerNorm overflows and the prediction is NaN.
        let shard = try FileManager.default.contentsOfDirectory(atPath: h.dir + "/store").filter { $0.hasSuffix(".h5") }.sorted()[0]
        let f = try H5File.open(h.dir + "/store/" + shard, writable: true)
        let huge = [Float](repeating: 3e38, count: 6 * 5)
        try huge.withUnsafeBufferPointer { try f.dataset("audio").writeRows(start: 5, count: 1, from: $0.baseAddress!) }
        try f.close()
        let r = try pretrain(h, cfg, ["--epochs", "3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("loss is not finite at step"), r.err)
        XCTAssertTrue(r.err.contains("non-finite prediction") && r.err.contains("for samples 5"), r.err)
        XCTAssertTrue(r.err.contains("last good checkpoint is"), r.err)
        let newest = Checkpoint.list(h.dir + "/run/checkpoints").first(where: \.complete)
        XCTAssertNotNil(newest)
        XCTAssertFalse(r.err.contains("Fatal error"))
    }

    func testFinetuneKeepsBestAndEvaluates() throws {
        let h = try RunHarness("finetune")
        try h.synth(samples: 40, labeled: true)
        let cfg = try h.writeConfig()
        let pre = try pretrain(h, cfg, ["--max-steps", "3"])
        XCTAssertEqual(pre.status, 0, pre.err)
        let ft = try h.run(["finetune", "-c", cfg, "--run-dir", h.dir + "/ft", "--epochs", "2",
                            "--init-checkpoint", h.checkpoint(step: 3)], np: 2)
        XCTAssertEqual(ft.status, 0, ft.err)
        XCTAssertTrue(ft.err.contains("pretrained weights"), ft.err)
        let best = h.dir + "/ft/checkpoints/best.h5"
        XCTAssertTrue(FileManager.default.fileExists(atPath: best))
        let log = try MetricsLogReader.read(runDirectory: h.dir + "/ft")
        XCTAssertGreaterThan(log.records.count, 0)
        let ev = try h.run(["evaluate", "--checkpoint", best, "--store", h.dir + "/store", "--split", "valid", "--split", "test",
                            "--json", h.dir + "/m.json"])
        XCTAssertEqual(ev.status, 0, ev.err)
        XCTAssertTrue(ev.out.contains("Acc-7"), ev.out)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: h.dir + "/m.json"))) as! [String: Any]
        XCTAssertNotNil((json["test"] as? [String: Any])?["mae"])
        let pr = try h.run(["predict", "--checkpoint", best, "--store", h.dir + "/store", "--split", "test"])
        XCTAssertEqual(pr.status, 0, pr.err)
        let lines = pr.out.split(separator: "\n")
        XCTAssertEqual(lines.first, "utterance_id,global_id,prediction,label")
        XCTAssertGreaterThan(lines.count, 2)
        // --tokenizer changes the tokenizer only: the text length (16 here, not the default
        // 39) still comes from the checkpoint, so the predictions are the same.
        let withTok = try h.run(["predict", "--checkpoint", best, "--store", h.dir + "/store", "--split", "test",
                                 "--tokenizer", h.dir + "/vocab.txt"])
        XCTAssertEqual(withTok.status, 0, withTok.err)
        XCTAssertEqual(withTok.out, pr.out, "predict --tokenizer must keep the checkpoint's text length")
        let evTok = try h.run(["evaluate", "--checkpoint", best, "--store", h.dir + "/store", "--split", "valid", "--split", "test",
                               "--tokenizer", h.dir + "/vocab.txt"])
        XCTAssertEqual(evTok.status, 0, evTok.err)
        XCTAssertEqual(evTok.out, ev.out, "evaluate --tokenizer must keep the checkpoint's text length")
        // Threads: the launcher's OPENBLAS_NUM_THREADS (the harness sets 1); without it, the
        // CPUs this process may use; --threads wins. The metrics do not depend on the count.
        XCTAssertTrue(ev.err.contains("threads: 1 per rank (OPENBLAS_NUM_THREADS)"), ev.err)
        let cpus = RankPlacement.read(rank: 0, threads: 1).cpus.count
        let evAll = try h.run(["evaluate", "--checkpoint", best, "--store", h.dir + "/store", "--split", "valid", "--split", "test",
                               "--json", h.dir + "/m-all.json"], environment: ["OPENBLAS_NUM_THREADS": ""])
        XCTAssertEqual(evAll.status, 0, evAll.err)
        XCTAssertTrue(evAll.err.contains("threads: \(cpus) per rank ("), evAll.err)
        let jsonAll = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: h.dir + "/m-all.json"))) as! [String: Any]
        let mae = { (j: [String: Any]) in ((j["test"] as? [String: Any])?["mae"] as? Double) ?? .nan }
        XCTAssertEqual(mae(jsonAll), mae(json), accuracy: 1e-5, "the metrics do not depend on the thread count")
        let evSet = try h.run(["evaluate", "--checkpoint", best, "--store", h.dir + "/store", "--split", "test", "--threads", "2"])
        XCTAssertEqual(evSet.status, 0, evSet.err)
        XCTAssertTrue(evSet.err.contains("threads: 2 per rank (train.threads)"), evSet.err)
    }
}

final class BertCacheTests: XCTestCase {
    /// With BERT's dropout off (so eval and train mode agree), training from the cache
    /// equals training with BERT run every step, on 1 and 2 ranks; random-mask samples
    /// (no lexicon word) included.
    func testCachedTrainingEqualsFullTraining() throws {
        let h = try RunHarness("cache")
        try h.synth(samples: 40)
        let cfg = try h.writeConfig()
        let common = ["--max-steps", "8", "--epochs", "20", "--set", "model.bert.hidden_dropout_prob=0",
                      "--set", "model.bert.attention_probs_dropout_prob=0"]
        let plain = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/plain"] + common)
        XCTAssertEqual(plain.status, 0, plain.err)
        let cached = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/cached", "--set", "data.bertCache=true"] + common, np: 2)
        XCTAssertEqual(cached.status, 0, cached.err)
        XCTAssertTrue(cached.err.contains("encoding every sample's [MASK] row once"), cached.err)
        let again = try h.run(["pretrain", "-c", cfg, "--run-dir", h.dir + "/again", "--set", "data.bertCache=true"] + common)
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertTrue(again.err.contains("bert cache: using"), again.err)
        let ref = try h.parameters(h.checkpoint(step: 8, run: "plain"))
        for run in ["cached", "again"] {
            let p = try h.parameters(h.checkpoint(step: 8, run: run))
            XCTAssertLessThan(maxRelativeDifference(p, ref), 1e-5, run)
        }
        // The store has samples without a lexicon word: their candidates are all cached.
        let f = try H5File.open(h.dir + "/store/bert-cache/cache-00000.h5")
        let counts = try f.read("count", as: Int32.self).values
        XCTAssertTrue(counts.contains { $0 > 1 }, "no random-mask sample in the test store")
        XCTAssertEqual(try f.shape("rows")[0], Int(counts.reduce(0, +)))
    }

    func testCacheNeedsFrozenBertPretraining() throws {
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "data.bertCache=true", "model.freezeBert=false"])) {
            XCTAssertTrue("\($0)".contains("frozen BERT"), "\($0)")
        }
    }
}
