// Real runs through Cluster/launch.sh: the header and the metrics log's run_start say where
// each rank ran (its CPUs and their physical cores), and a rank uses the threads the launcher
// bound cores for (train.threads 0 takes OPENBLAS_NUM_THREADS).
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
}
