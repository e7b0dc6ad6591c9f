// scripts/bench_node.sh's plan (what a node lent for minutes would run, in which order, at
// which rank counts), scripts/scaling_table.py's arithmetic (efficiency, compute slowdown,
// the DDP ratio, the node's placements fastest first), and scripts/bench_scaling.sh itself at
// 1 and 2 ranks. The measurements need a release build and a bundle: docs/scaling.md records them.
import Foundation
import XCTest

final class ScalingScriptTests: XCTestCase {
    private var node: String { ProcessRunner.repoRoot.appendingPathComponent("scripts/bench_node.sh").path }
    private var table: String { ProcessRunner.repoRoot.appendingPathComponent("scripts/scaling_table.py").path }

    private func lines(_ s: String) -> [String] { s.split(separator: "\n").map(String.init) }

    func testNodePlanFitsTheCPUsInOrder() throws {
        let r = try ProcessRunner.run("/bin/bash", [node, "all"], environment: ["DRY_RUN": "1", "CPUS": "16", "BUDGET_S": "300"])
        XCTAssertEqual(r.status, 0, r.summary)
        let plan = lines(r.stdout).dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        // label, task, "ranks", sizes..., "~Ns", settings
        let labels = plan.map { $0[0] }
        XCTAssertEqual(labels, ["pretrain", "sum", "pretrain-shm", "pretrain-half", "pretrain-poll", "pretrain-spare", "pretrain-2threads",
                                "pretrain-diagnose", "pretrain-half-shm", "pretrain-4threads", "finetune", "finetune-shm",
                                "finetune-poll", "finetune-shm-zero1",
                                "finetune-2threads", "finetune-half", "finetune-zero1", "cached", "cached-shm"], r.stdout)
        func ranks(_ label: String) -> [String] {
            let row = plan.first { $0[0] == label }!
            return Array(row[3...].prefix { !$0.hasPrefix("~") })
        }
        XCTAssertEqual(ranks("pretrain"), ["1", "16"])
        XCTAssertEqual(ranks("sum"), ["16"], "the sum alone at every CPU")
        XCTAssertEqual(ranks("pretrain-half"), ["8"])
        XCTAssertEqual(ranks("pretrain-spare"), ["15"])
        XCTAssertEqual(ranks("pretrain-2threads"), ["1", "8"], "8 ranks x 2 threads fill 16 CPUs")
        XCTAssertEqual(ranks("pretrain-4threads"), ["1", "4"])
        XCTAssertEqual(ranks("finetune-half"), ["8"], "one rank per core of 8 cores x 2, beside 8 x 2 threads")
        XCTAssertTrue(r.stdout.contains("budget 300s"), r.stdout)
        XCTAssertTrue(lines(r.stdout).first { $0.contains("finetune-shm-zero1") }!
            .contains("EXTRA_SET=--set train.allreduce=shm --set train.shardOptimizer=true"), r.stdout)

        // On 2 CPUs the half and full sizes collapse and 4 threads per rank do not fit.
        let small = try ProcessRunner.run("/bin/bash", [node], environment: ["DRY_RUN": "1", "CPUS": "2"])
        XCTAssertEqual(small.status, 0, small.summary)
        XCTAssertTrue(small.stdout.contains("pretrain-4threads: no rank count fits 2 CPUs"), small.stdout)
        XCTAssertFalse(small.stdout.contains("finetune"), "the default plan is pretraining alone\n" + small.stdout)
        XCTAssertTrue(lines(small.stdout).contains { $0.hasPrefix("  pretrain ") && $0.contains("ranks 1 2 ") }, small.stdout)
        // Without CPUS, a CPU quota below the node's CPUs is what the plan fills (the launcher's view).
        let quota = try ProcessRunner.run("/bin/bash", [node], environment: ["DRY_RUN": "1", "LAUNCH_TEST_NODE_QUOTA": "1.5"])
        XCTAssertEqual(quota.status, 0, quota.summary)
        if ProcessInfo.processInfo.activeProcessorCount > 1 {
            XCTAssertTrue(quota.stdout.contains("bench_node: a CPU quota of 1.5 CPUs: planned for 1 of the"), quota.stdout)
            XCTAssertTrue(quota.stdout.contains("bench_node: plan for 1 CPUs"), quota.stdout)
        }
    }

    /// The instrument a lent node runs, end to end at 1 and 2 ranks (tiny batches, the debug
    /// build: a check of the path, not figures): ranks started through Cluster/launch.sh, and
    /// every result line with the placement, the CPU each rank kept and the sum that ran.
    func testBenchScalingRunsThroughTheLauncherAndRecordsTheRuns() throws {
        let skesl = URL(fileURLWithPath: try ProcessRunner.mpitestExecutable()).deletingLastPathComponent()
            .appendingPathComponent("skesl").path
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: skesl), "skesl is not built next to skesl-mpitest: \(skesl)")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("skesl-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let script = ProcessRunner.repoRoot.appendingPathComponent("scripts/bench_scaling.sh").path
        let r = try ProcessRunner.run("/bin/bash", [script], environment: [
            "SKESL": skesl, "DDP": "0", "SIZES": "1 2", "MAX_RANKS": "2", "TASKS": "pretrain", "PER": "1", "STEPS": "2",
            "OUT": out.path], timeout: 400)
        XCTAssertEqual(r.status, 0, r.summary)
        let results = try String(contentsOf: out.appendingPathComponent("results.jsonl"), encoding: .utf8)
        let runs = try results.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            .filter { $0["skesl"] != nil }
        XCTAssertEqual(runs.map { $0["ranks"] as? Int }, [1, 2], results)
        for run in runs {
            XCTAssertGreaterThan(run["samples_per_s"] as? Double ?? 0, 0, results)
            XCTAssertTrue((run["placement"] as? String ?? "").contains("--bind-to core"), "the launcher's placement\n" + results)
            let onCPU = run["compute_on_cpu_min"] as? Double ?? -1
            XCTAssertTrue(onCPU > 0 && onCPU <= 1.001, results)
            // The host as the ranks saw it, for the node line's one-rank-per-core placements.
            let cpus = ProcessInfo.processInfo.activeProcessorCount
            XCTAssertEqual(run["host_cpus"] as? Int, cpus, results)
            XCTAssertTrue((1...cpus).contains(run["host_cores"] as? Int ?? 0), results)
        }
        XCTAssertTrue((runs[1]["gradient_sum"] as? String ?? "").hasPrefix("MPI all-reduce, deferred progress"), results)
        XCTAssertTrue(r.stdout.contains(" on CPU ") && r.stdout.contains("\npretrain      2       1 |"), r.stdout)
        // The ranks' own logs come back too.
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("pretrain-2.err").path))
    }

    func testNodeScriptRejectsBadInputWithAMessage() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("skesl-no-bundle-\(UUID().uuidString)").path
        for (args, env, message) in [(["bogus"], [String: String](), "unknown plan 'bogus'"),
                                     ([], ["BUDGET_S": "soon"], "BUDGET_S must be a positive number of seconds"),
                                     ([], ["CPUS": "0"], "CPUS must be a positive integer"),
                                     ([], ["BUNDLE": empty + "/skesl-bundle.tar.xz", "OUT": empty + "/out"], "no bundle at ")] {
            let r = try ProcessRunner.run("/bin/bash", [node] + args, environment: env)
            XCTAssertEqual(r.status, 2, r.summary)
            XCTAssertTrue(r.stderr.contains(message), "expected '\(message)'\n" + r.summary)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: empty), "nothing written before the bundle is found")
    }

    func testScalingTableComputesEfficiencyComputeRatioAndPlacements() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skesl-table-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func skesl(_ label: String, _ ranks: Int, _ threads: Int, _ sps: Double, compute: Double, imbalance: Double = 0,
                   allreduce: Double = 0, from: String = "estimate", sharing: Int = 0, onCPU: Double = 0.999,
                   sum: String = "MPI all-reduce, deferred progress (auto)", extra: String = "") -> String {
            #"{"skesl": "pretrain", "ranks": \#(ranks), "per_rank_batch": 16, "threads_per_rank": \#(threads), "samples_per_s": \#(sps), "#
                + (ranks > 1 ? #""gradient_sum": "\#(sum)", "# : "") + extra
                + #""compute_on_cpu_min": \#(onCPU), "compute_on_cpu_min_rank": 3, "preemptions_max": 7.5, "other_threads_compute_ms_median": 41.0, "#
                + #""step_ms_median_rank": 900.0, "imbalance_share": \#(imbalance), "allreduce_share": \#(allreduce), "#
                + #""allreduce_share_max": 0.01, "imbalance_from": "\#(from)", "compute_ms_median_rank": \#(compute), "#
                + #""placement": "--bind-to core", "ranks_sharing_a_core": \#(sharing), "label": "\#(label)"}"#
        }
        func ddp(_ world: Int, _ sps: Double, _ eff: Double) -> String {
            #"{"bench": "ddp_pretrain_reference", "world": \#(world), "per_rank_batch": 16, "threads_per_rank": 1, "#
                + #""samples_per_s": \#(sps), "weak_scaling_efficiency": \#(eff), "allreduce_ms": \#(Double(world) / 2), "label": "pretrain"}"#
        }
        let rows = [skesl("pretrain", 1, 1, 18.0, compute: 800), skesl("pretrain", 16, 1, 216.0, compute: 960, imbalance: 0.05, allreduce: 0.02, sharing: 16, onCPU: 0.82),
                    ddp(1, 16.0, 1.0), ddp(16, 160.0, 0.625),
                    skesl("pretrain-shm", 16, 1, 244.8, compute: 880, sum: "shared memory, 1 host x 16 ranks"),
                    skesl("pretrain-2threads", 1, 2, 30.0, compute: 470),
                    // One rank per physical core of a node of 8 cores x 2 hyperthreads.
                    skesl("pretrain-half", 8, 1, 120.0, compute: 850, extra: #""host_cpus": 16, "host_cores": 8, "#),
                    skesl("pretrain-2threads", 8, 2, 228.0, compute: 500, extra: #""ranks_spanning_numa": 2, "#),
                    skesl("pretrain-diagnose", 16, 1, 200.0, compute: 1000, imbalance: 0.1, from: "barrier",
                          extra: #""throttled_ms_max": 212.4, "cpu_quota": 12.5, "diagnosis": "10.0% of the step waiting for the slowest rank, rank 7", "#),
                    #"{"skipped_entry": "pretrain-4threads", "why": "about 60 s needed, 12 s of the budget left"}"#,
                    // skesl bench-sum's lines (bench_node's sum plan), the larger gradient first to check the order.
                    #"{"bench": "sum", "size": "finetune", "floats": 110000000, "mb": 440.0, "sum": "shm", "ranks": 16, "hosts": 1, "algorithm": "default", "ms_median_rank": 310.5, "ms_slowest_rank": 320.25, "label": "sum"}"#,
                    #"{"bench": "sum", "size": "pretrain", "floats": 1963213, "mb": 7.853, "sum": "deferred", "ranks": 16, "hosts": 1, "algorithm": "default", "ms_median_rank": 9.5, "ms_slowest_rank": 11.0, "label": "sum"}"#,
                    #"{"bench": "sum", "size": "pretrain", "floats": 1963213, "mb": 7.853, "sum": "deferred", "ranks": 16, "hosts": 1, "algorithm": "4", "ms_median_rank": 6.25, "ms_slowest_rank": 7.0, "label": "sum"}"#,
                    #"{"bench": "sum", "size": "pretrain", "floats": 1963213, "mb": 7.853, "sum": "deferred", "bucket_mb": 2, "ranks": 16, "hosts": 1, "algorithm": "default", "ms_median_rank": 5.0, "ms_slowest_rank": 5.5, "label": "sum"}"#,
                    #"{"bench": "sum", "size": "finetune", "floats": 110000000, "mb": 440.0, "sum": "deferred", "single_copy": "none", "ranks": 16, "hosts": 1, "algorithm": "default", "ms_median_rank": 400.0, "ms_slowest_rank": 410.0, "label": "sum"}"#,
                    #"{"failed_sum": "shm:", "error": "exit 1 (logs/sum/sum.err)"}"#,
                    #"{"bench": "sgemm_load", "core": "SkylakeX", "alone_gflops": 120.0, "processes": 16, "min_gflops": 90.0, "median_gflops": 96.0, "max_gflops": 101.5}"#,
                    #"{"bench": "sgemm_load", "core": "SkylakeX", "alone_gflops": 120.0, "processes": 8, "min_gflops": 105.0, "median_gflops": 110.0, "max_gflops": 112.0, "one_per_core": true}"#]
        let file = dir.appendingPathComponent("results.jsonl")
        try (rows.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let r = try ProcessRunner.run("/usr/bin/env", ["python3", table, file.path, "--node"])
        XCTAssertEqual(r.status, 0, r.summary)
        func row(_ label: String, _ ranks: String) -> [String] {
            let l = lines(r.stdout).first { $0.hasPrefix("pretrain") && $0.contains(" \(label) ")
                && $0.split(separator: "|")[0].split(separator: " ").dropFirst(2).first.map(String.init) == ranks }
            XCTAssertNotNil(l, "no row \(label) \(ranks)\n" + r.stdout)
            return (l ?? "").split(separator: " ").map(String.init).filter { $0 != "|" }
        }
        // pretrain 16: 216 / (16 x 18) = 75%, compute 960 / 800 = 1.20, against DDP 216 / 160 = 1.35x.
        // The least any rank held its CPU in forward + backward: 82%.
        XCTAssertEqual(row("pretrain", "16"), ["pretrain", "pretrain", "16", "16", "216.00", "75%", "1.20", "82%", "5.0%", "2.0%",
                                              "160.00", "62%", "1.35x"])
        XCTAssertEqual(row("pretrain-shm", "16")[7], "100%")
        // That run, and only it, is named with its preempted rank and what its other threads ran.
        XCTAssertTrue(r.stdout.contains("ranks preempted while computing (under 95% on CPU): pretrain 16x1: rank 3 on its CPU 82% of "
            + "forward + backward, preempted up to 7.5 times per step; its other threads ran 41 ms per step meanwhile (median rank)\n"), r.stdout)
        // An entry without a one-rank run takes the first one of the same threads: 244.8 / 288 = 85%, 880 / 800.
        XCTAssertEqual(Array(row("pretrain-shm", "16")[4...6]), ["244.80", "85%", "1.10"])
        // Two threads per rank against one rank of two threads: 228 / (8 x 30) = 95%, 500 / 470.
        XCTAssertEqual(Array(row("pretrain-2threads", "8x2")[4...6]), ["228.00", "95%", "1.06"])
        XCTAssertTrue(r.stdout.contains("measured with a barrier in: pretrain-diagnose"), r.stdout)
        // Which sum each run used, from its run_start.
        XCTAssertTrue(r.stdout.contains("gradient sum: shared memory, 1 host x 16 ranks: pretrain-shm 16\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("gradient sum: MPI all-reduce, deferred progress (auto): pretrain 16, pretrain-half 8, pretrain-2threads 8, pretrain-diagnose 16\n"), r.stdout)
        // The run's own view of its placement: all 16 ranks had a hyperthread sibling rank.
        XCTAssertTrue(r.stdout.contains("ranks sharing a physical core with another rank (hyperthread siblings): pretrain 16x1: 16 of 16\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains(#"note: {"skipped_entry": "pretrain-4threads""#), r.stdout)
        XCTAssertTrue(r.stdout.contains("ranks with CPUs on more than one NUMA node (part of their memory remote): pretrain-2threads 8x2: 2 of 8\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("diagnosis, pretrain-diagnose 16x1: 10.0% of the step waiting for the slowest rank, rank 7\n"), r.stdout)
        // The sum alone, smaller gradient first; a failed job is a note.
        XCTAssertTrue(r.stdout.contains("the sum alone, pretrain gradient (7.9 MB), 16 ranks on 1 host(s), ms median rank / slowest: "
            + "deferred 9.50 / 11.00, deferred (coll_tuned 4) 6.25 / 7.00, deferred (buckets 2 MiB) 5.00 / 5.50\nthe sum alone, finetune gradient (440.0 MB), 16 ranks on 1 host(s), "
            + "ms median rank / slowest: shm 310.50 / 320.25, deferred (single copy none) 400.00 / 410.00\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains(#"note: {"failed_sum": "shm:""#), r.stdout)
        XCTAssertTrue(r.stdout.contains("sgemm (SkylakeX kernel), one process alone 120.0 GFLOP/s; 16 at once, min / median / max "
            + "90.0 / 96.0 / 101.5 (median 1.25x slower: the floor of compute x at that size)\n"), r.stdout)
        // On a node with hyperthreads, one process per physical core as well: the clock without the siblings.
        XCTAssertTrue(r.stdout.contains("sgemm (SkylakeX kernel), one process alone 120.0 GFLOP/s; 8 at once (one per physical core, "
            + "no hyperthread sibling busy), min / median / max 105.0 / 110.0 / 112.0 (median 1.09x slower"), r.stdout)
        XCTAssertTrue(r.stdout.contains("PyTorch gloo all-reduce of the DDP peer's gradient alone (best of 5): pretrain 16 ranks 8.00 ms\n"), r.stdout)
        // A run under a CPU quota, and only it, is named with the quota and its throttled time.
        XCTAssertTrue(r.stdout.contains("runs under a CPU quota (cgroup; docs/scaling.md, \"A CPU quota\"): pretrain-diagnose 16x1: "
            + "quota 12.5 CPUs, throttled up to 212 ms per step\n"), r.stdout)
        // Every CPU filled, and (the runs saw 8 cores) one rank per core: 120 / (8 x 18) = 83%.
        XCTAssertEqual(Array(row("pretrain-half", "8")[4...5]), ["120.00", "83%"])
        XCTAssertTrue(r.stdout.contains("node, pretrain, all 16 CPUs or one rank per physical core (8 cores), fastest first: "
            + "16x1 pretrain-shm 244.80 s/s, 8x2 pretrain-2threads 228.00 s/s, 16x1 pretrain 216.00 s/s, "
            + "16x1 pretrain-diagnose 200.00 s/s, 8x1 pretrain-half 120.00 s/s\n"), r.stdout)
        // Without host_cores (older results, or cores = CPUs) the line names the CPUs alone.
        try (rows.filter { !$0.contains("pretrain-half") }.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let plain = try ProcessRunner.run("/usr/bin/env", ["python3", table, file.path, "--node"])
        XCTAssertTrue(plain.stdout.contains("node, pretrain, all 16 CPUs, fastest first: 16x1 pretrain-shm 244.80 s/s, "
            + "8x2 pretrain-2threads 228.00 s/s, 16x1 pretrain 216.00 s/s, 16x1 pretrain-diagnose 200.00 s/s\n"), plain.stdout)

        // A cut-off line is named, not a traceback.
        try (rows[0] + "\n" + #"{"skesl": "pretrain", "ra"# + "\n").write(to: file, atomically: true, encoding: .utf8)
        let bad = try ProcessRunner.run("/usr/bin/env", ["python3", table, file.path])
        XCTAssertEqual(bad.status, 1, bad.summary)
        XCTAssertTrue(bad.stderr.contains("results.jsonl line 2 is not JSON"), bad.summary)
    }
}
