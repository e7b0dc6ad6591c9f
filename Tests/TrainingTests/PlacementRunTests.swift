// Real runs through Cluster/launch.sh: the header and the metrics log's run_start say where
// each rank ran (its CPUs and their physical cores), and a rank uses the threads the launcher
// bound cores for (train.threads 0 takes OPENBLAS_NUM_THREADS). A job started in a control
// group with a CPU quota below what its ranks need is warned of by the launcher and the run
// header, and its throttled time is measured per step.
import Foundation
import XCTest
import CLISupport
import SKESLReporting

final class PlacementRunTests: XCTestCase {
    let launch = RunHarness.repositoryRoot + "/Cluster/launch.sh"

    func placement(_ runDir: String) throws -> PlacementReport {
        let start = try MetricsLogReader.read(path: runDir + "/metrics.jsonl").records.compactMap { r -> RunStartRecord? in
            if case .runStart(let s) = r { return s } else { return nil } }.last
        return try XCTUnwrap(start?.placement, "run_start has no placement")
    }

    /// The physical core of a CPU, read here the plain way, apart from RankPlacement.
    func core(_ cpu: Int) -> String {
        let t = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
        func read(_ f: String) -> String? { (try? String(contentsOfFile: t + f, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let c = read("core_id") else { return "cpu\(cpu)" }
        return (read("physical_package_id") ?? "0") + ":" + c
    }

    func testRunStartSaysWhereEachRankRanAndRanksUseTheLaunchersThreads() throws {
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let cores = Set((0..<online).map(core))
        guard cores.count >= 2 else { throw XCTSkip("needs 2 physical cores to bind 2 ranks (this machine: \(cores.count))") }
        let h = try RunHarness("placement")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let common = ["pretrain", "-c", cfg, "--max-steps", "1", "--resume", "none"]
        let mca = ["--mca", "btl", "self,vader,tcp"]

        // launch.sh's default: each rank bound to one core.
        let bound = try h.run(common + ["--run-dir", h.dir + "/bound"], launcher: [launch, "-n", "2"] + mca)
        XCTAssertEqual(bound.status, 0, bound.err)
        XCTAssertTrue(bound.err.contains("placement: 2 ranks x 1 thread on "), bound.err)
        let b = try placement(h.dir + "/bound")
        XCTAssertEqual(b.ranks.map(\.rank), [0, 1])
        XCTAssertEqual(b.ranks.map(\.node), [0, 0], "one host as MPI groups them: its first rank is 0")
        for r in b.ranks {
            XCTAssertEqual(r.cores, r.cpus.map(core), "rank \(r.rank)")
            XCTAssertEqual(Set(r.cores).count, 1, "rank \(r.rank) is bound to one core: \(r)")
            XCTAssertEqual(r.cpus, (0..<online).filter { core($0) == r.cores[0] }, "all CPUs of that core")
            XCTAssertEqual(r.hostCPUs, online); XCTAssertEqual(r.hostCores, cores.count)
        }
        XCTAssertNotEqual(b.ranks[0].cores, b.ranks[1].cores)
        XCTAssertEqual(b.sharedCPUs, []); XCTAssertEqual(b.sharedCores, []); XCTAssertEqual(b.unbound, [])
        XCTAssertTrue(b.summary.hasSuffix("no two ranks share a core"), b.summary)

        // Unbound ranks roam the host, and the report says so.
        let free = try h.run(common + ["--run-dir", h.dir + "/unbound"], launcher: [launch, "-n", "2", "--bind", "none"] + mca)
        XCTAssertEqual(free.status, 0, free.err)
        let u = try placement(h.dir + "/unbound")
        XCTAssertEqual(u.unbound, [0, 1])
        XCTAssertEqual(u.ranks.map(\.cpus), [Array(0..<online), Array(0..<online)])
        XCTAssertTrue(free.err.contains("2 rank(s) not bound to CPUs"), free.err)

        // --threads 2: the rank holds two cores and computes on two threads.
        let two = try h.run(common + ["--run-dir", h.dir + "/threads"], launcher: [launch, "-n", "1", "--threads", "2"] + mca)
        XCTAssertEqual(two.status, 0, two.err)
        XCTAssertTrue(two.err.contains("1 rank(s) x 2 thread(s)"), two.err)
        let t = try placement(h.dir + "/threads")
        XCTAssertEqual(t.ranks.first?.threads, 2)
        XCTAssertEqual(Set(t.ranks.first?.cores ?? []).count, 2, "\(t)")
        XCTAssertEqual(t.threadsOverCPUs, [])
    }

    /// A control group of this process's cpu hierarchy (cgroup v1, or v2 at the mount's root)
    /// with a CPU quota, removed when the test ends; skips where none can be made (not root, a
    /// read-only or delegated hierarchy).
    func quotaGroup(quota: Int, period: Int) throws -> String {
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let fm = FileManager.default
        let name = "skesl-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func write(_ text: String, _ path: String) -> Bool { (try? text.write(toFile: path, atomically: false, encoding: .utf8)) != nil }
        for line in mounts.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let a = halves[0].split(separator: " "), b = halves[1].split(separator: " ")
            guard a.count >= 5, b.count >= 3 else { continue }
            let point = String(a[4])
            let v1 = b[0] == "cgroup" && b[2].split(separator: ",").contains("cpu"), v2 = b[0] == "cgroup2"
            guard v1 || v2 else { continue }
            let g = point + "/" + name
            guard (try? fm.createDirectory(atPath: g, withIntermediateDirectories: false)) != nil else { continue }
            addTeardownBlock {
                // The job has ended; a process left behind (a timed-out run) is killed first.
                for _ in 0..<50 {
                    let pids = ((try? String(contentsOfFile: g + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
                    pids.forEach { kill($0, SIGKILL) }
                    if rmdir(g) == 0 || errno == ENOENT { return }
                    usleep(100_000)
                }
            }
            let set = v1 ? write("\(period)", g + "/cpu.cfs_period_us") && write("\(quota)", g + "/cpu.cfs_quota_us")
                         : (write("+cpu", point + "/cgroup.subtree_control") || true) && write("\(quota) \(period)", g + "/cpu.max")
            if set { return g }
        }
        throw XCTSkip("no control group with a CPU quota can be made here (needs root and a writable cgroup cpu hierarchy)")
    }

    func testACPUQuotaIsReportedAndItsThrottlingMeasured() throws {
        // Half a CPU's time per 10 ms for two busy ranks: the group is throttled in every period.
        let g = try quotaGroup(quota: 5_000, period: 10_000)
        let h = try RunHarness("quota")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        // The launcher moves itself into the group first; mpirun and the ranks inherit it.
        let inGroup = ["/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\"", g + "/cgroup.procs", launch]
        let mca = ["--mca", "btl", "self,vader,tcp", "--oversubscribe"]
        let r = try h.run(["pretrain", "-c", cfg, "--max-steps", "6", "--resume", "none", "--run-dir", h.dir + "/run"],
                          timeout: 400, launcher: inGroup + ["-n", "2"] + mca)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("launch.sh: warning: 2 rank(s) x 1 thread(s) want more than this node's CPU quota of 0.5 CPUs"), r.err)
        let p = try placement(h.dir + "/run")
        for rank in p.ranks {
            let q = try XCTUnwrap(rank.quota, "rank \(rank.rank) saw no quota")
            XCTAssertEqual(q.cpus, 0.5); XCTAssertTrue(g.hasSuffix(q.group), "\(q.group) in \(g)")
        }
        XCTAssertEqual(p.overQuota, [0, 1])
        XCTAssertTrue(r.err.contains("2 rank(s) need more CPUs than their control group's quota allows (0.5 CPUs (cgroup"), r.err)
        // Throttling, per step and over the run.
        let rec = try XCTUnwrap(MetricsLogReader.read(path: h.dir + "/run/metrics.jsonl").records.compactMap { x -> StepTimesRecord? in
            if case .stepTimes(let s) = x { return s } else { return nil } }.last, "no step_times record")
        let throttled = try XCTUnwrap(rec.cpu?.throttled, rec.text)
        XCTAssertGreaterThan(throttled.max, 0, rec.text)
        XCTAssertEqual(rec.cpu?.ranks["throttled_s"]?.count, 2)
        XCTAssertTrue(r.err.contains("its control group held back by its CPU quota"), r.err)
        XCTAssertTrue(rec.diagnosis?.hasPrefix("the control group's CPU quota held the ranks back") ?? false, rec.text)
        let steps = try String(contentsOfFile: h.dir + "/run/step-times/rank-00000.jsonl", encoding: .utf8)
        XCTAssertTrue(steps.contains(#""throttled":"#), steps)
        // Without --np the launcher fills the quota, not the cores: one rank.
        let dry = try h.run([], launcher: inGroup + ["--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.err)
        XCTAssertTrue(dry.out.contains(" -np 1 "), dry.out)
        XCTAssertTrue(dry.err.contains("may use 0.5 CPUs' time (a CPU quota)"), dry.err)
    }
}
