// Where ranks run (RankPlacement, PlacementReport): the CPU list syntax, reading a rank's
// affinity and cores from a fixture /proc and /sys tree, and what a set of placements means:
// hyperthread siblings, shared CPUs, unbound ranks, more threads than CPUs.
import Foundation
import SKESLReporting
import XCTest

final class RankPlacementTests: XCTestCase {
    func testCPUListSyntax() {
        XCTAssertEqual(RankPlacement.parseCPUList("0-3,8,10-11"), [0, 1, 2, 3, 8, 10, 11])
        XCTAssertEqual(RankPlacement.parseCPUList(" 5"), [5])
        XCTAssertNil(RankPlacement.parseCPUList(""))
        XCTAssertNil(RankPlacement.parseCPUList("3-1"))
        XCTAssertNil(RankPlacement.parseCPUList("0-"))
        XCTAssertNil(RankPlacement.parseCPUList("ff"))
    }

    /// A host of 4 CPUs = 2 cores x 2 hyperthreads (CPU n on core n % 2, as Linux numbers
    /// siblings on many Xeons), CPU 3 without topology files.
    func fixture(allowed: String) throws -> String {
        let root = NSTemporaryDirectory() + "placement-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/proc/self", withIntermediateDirectories: true)
        try "Name:\tskesl\nCpus_allowed:\tf\nCpus_allowed_list:\t\(allowed)\nMems_allowed_list:\t0\n"
            .write(toFile: root + "/proc/self/status", atomically: true, encoding: .utf8)
        let cpu = root + "/sys/devices/system/cpu"
        try fm.createDirectory(atPath: cpu, withIntermediateDirectories: true)
        try "0-3\n".write(toFile: cpu + "/online", atomically: true, encoding: .utf8)
        for n in 0..<3 {
            try fm.createDirectory(atPath: cpu + "/cpu\(n)/topology", withIntermediateDirectories: true)
            try "\(n % 2)\n".write(toFile: cpu + "/cpu\(n)/topology/core_id", atomically: true, encoding: .utf8)
            try "0\n".write(toFile: cpu + "/cpu\(n)/topology/physical_package_id", atomically: true, encoding: .utf8)
        }
        addTeardownBlock { try? fm.removeItem(atPath: root) }
        return root
    }

    func testReadsAffinityAndCoresFromProcAndSys() throws {
        let p = RankPlacement.read(rank: 3, threads: 2, host: "n1", root: try fixture(allowed: "0,2"))
        XCTAssertEqual(p, RankPlacement(rank: 3, host: "n1", cpus: [0, 2], cores: ["0:0", "0:0"], hostCPUs: 4, hostCores: 3, threads: 2))
        // CPUs the host does not have are dropped; a CPU without topology is a core of its own.
        let q = RankPlacement.read(rank: 0, threads: 1, host: "n1", root: try fixture(allowed: "1,3,7"))
        XCTAssertEqual(q.cpus, [1, 3]); XCTAssertEqual(q.cores, ["0:1", "cpu3"])
    }

    func testNUMANodesAreReadAndARankAcrossThemIsNamed() throws {
        let root = try fixture(allowed: "1,2")
        let node = root + "/sys/devices/system/node"
        for (n, list) in [(0, "0-1"), (1, "2-3"), (2, "")] {      // node 2: memory without CPUs
            try FileManager.default.createDirectory(atPath: node + "/node\(n)", withIntermediateDirectories: true)
            try (list + "\n").write(toFile: node + "/node\(n)/cpulist", atomically: true, encoding: .utf8)
        }
        try "0-2\n".write(toFile: node + "/online", atomically: true, encoding: .utf8)
        let p = RankPlacement.read(rank: 1, threads: 1, host: "n1", root: root)
        XCTAssertEqual(p.numa, [0, 1]); XCTAssertEqual(p.hostNUMANodes, 2)
        func place(_ rank: Int, _ cpus: [Int]) -> RankPlacement {
            RankPlacement(rank: rank, host: "n1", cpus: cpus, cores: cpus.map { "0:\($0)" }, hostCPUs: 4, hostCores: 4, threads: 1,
                          numa: cpus.map { $0 / 2 }, hostNUMANodes: 2)
        }
        let r = PlacementReport([place(0, [0, 1]), place(1, [1, 2]), place(2, [3])])
        XCTAssertEqual(r.spanningNUMA, [1])
        XCTAssertTrue(r.summary.hasPrefix("3 ranks x 1 thread on n1 (4 CPUs = 4 cores x 1, 2 NUMA nodes); "), r.summary)
        XCTAssertTrue(r.summary.contains("1 rank(s) have CPUs on more than one NUMA node (memory on the other is remote)"), r.summary)
        // Unbound ranks span every node by nature: that is said once, as unbound.
        let free = PlacementReport([place(0, [0, 1, 2, 3]), place(1, [0, 1, 2, 3])])
        XCTAssertEqual(free.spanningNUMA, []); XCTAssertFalse(free.summary.contains("NUMA node ("), free.summary)
        // Without NUMA information: nil, and the line as before.
        XCTAssertNil(PlacementReport([RankPlacement(rank: 0, host: "n1", cpus: [0], cores: ["0:0"], hostCPUs: 4, hostCores: 4, threads: 1)]).spanningNUMA)
        let line = try MetricsRecord.runStart(RunStartRecord(time: 1, run: "r", phase: "pretrain", worldSize: 3, placement: r)).jsonLine()
        XCTAssertTrue(line.contains(#""numa_nodes":[0,1]"#) && line.contains(#""spanning_numa":[1]"#), line)
        XCTAssertEqual(try MetricsRecord.parse(line: line), .runStart(RunStartRecord(time: 1, run: "r", phase: "pretrain", worldSize: 3, placement: r)))
    }

    func testReadsThisMachine() throws {
        let p = RankPlacement.read(rank: 0, threads: 1)
        if FileManager.default.fileExists(atPath: "/sys/devices/system/node/node0/cpulist") {
            XCTAssertEqual(p.numa?.count, p.cpus.count); XCTAssertGreaterThanOrEqual(p.hostNUMANodes ?? 0, 1)
        }
        XCTAssertFalse(p.cpus.isEmpty)
        XCTAssertEqual(p.cores.count, p.cpus.count)
        XCTAssertEqual(p.hostCPUs, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        XCTAssertLessThanOrEqual(p.cpus.count, p.hostCPUs)
        XCTAssertTrue((1...p.hostCPUs).contains(p.hostCores))
        XCTAssertFalse(p.host.isEmpty)
    }

    func place(_ rank: Int, _ cpus: [Int], host: String = "n1", threads: Int = 1) -> RankPlacement {
        // The fixture host: 4 CPUs on 2 cores, CPU n on core n % 2.
        RankPlacement(rank: rank, host: host, cpus: cpus, cores: cpus.map { "0:\($0 % 2)" }, hostCPUs: 4, hostCores: 2, threads: threads)
    }

    func testHyperthreadSiblingsAreNamed() throws {
        let r = PlacementReport([place(2, [1]), place(0, [0]), place(1, [2]), place(3, [3])])
        XCTAssertEqual(r.ranks.map(\.rank), [0, 1, 2, 3])
        XCTAssertEqual(r.sharedCores, [[0, 1], [2, 3]])
        XCTAssertEqual(r.sharedCPUs, []); XCTAssertEqual(r.unbound, []); XCTAssertEqual(r.threadsOverCPUs, [])
        XCTAssertEqual(r.summary, "4 ranks x 1 thread on n1 (4 CPUs = 2 cores x 2); bound to 1 CPU each; "
                       + "2 pair(s) of ranks share a physical core as hyperthread siblings (0+1, 2+3)")
        // Two ranks on the two cores: nothing shared.
        XCTAssertEqual(PlacementReport([place(0, [0]), place(1, [1])]).summary,
                       "2 ranks x 1 thread on n1 (4 CPUs = 2 cores x 2); bound to 1 CPU each; no two ranks share a core")
    }

    func testSharedCPUsUnboundRanksAndThreads() throws {
        let shared = PlacementReport([place(0, [0, 1], threads: 2), place(1, [1, 2], threads: 2)])
        XCTAssertEqual(shared.sharedCPUs, [[0, 1]]); XCTAssertEqual(shared.sharedCores, [])
        XCTAssertTrue(shared.summary.contains("1 pair(s) of ranks share CPUs (0+1)"), shared.summary)
        let unbound = PlacementReport([place(0, [0, 1, 2, 3]), place(1, [0, 1, 2, 3])])
        XCTAssertEqual(unbound.unbound, [0, 1]); XCTAssertEqual(unbound.sharedCPUs, [])
        XCTAssertEqual(unbound.summary, "2 ranks x 1 thread on n1 (4 CPUs = 2 cores x 2); 2 rank(s) not bound to CPUs (they roam the host)")
        // A lone rank may roam its host: nothing to say.
        XCTAssertEqual(PlacementReport([place(0, [0, 1, 2, 3], threads: 4)]).summary,
                       "1 rank x 4 threads on n1 (4 CPUs = 2 cores x 2); no two ranks share a core")
        let over = PlacementReport([place(0, [0], threads: 2), place(1, [1], threads: 2)])
        XCTAssertEqual(over.threadsOverCPUs, [0, 1])
        XCTAssertTrue(over.summary.hasSuffix("; 2 rank(s) have more threads than CPUs"), over.summary)
        // The same CPU numbers on two hosts are different CPUs.
        let hosts = PlacementReport([place(0, [0], host: "a"), place(1, [0], host: "b"), place(2, [2], host: "a")])
        XCTAssertEqual(hosts.sharedCPUs, []); XCTAssertEqual(hosts.sharedCores, [[0, 2]])
        XCTAssertTrue(hosts.summary.hasPrefix("3 ranks x 1 thread on 2 hosts (a: 2, b: 1)"), hosts.summary)
        // Hosts as MPI groups them (`node`, the host's first rank) over their names: two machines
        // that both call themselves n1 are two hosts; ranks of one node are one host.
        func at(_ rank: Int, node: Int) -> RankPlacement { var p = place(rank, [0]); p.node = node; return p }
        let twins = PlacementReport([at(0, node: 0), at(1, node: 0), at(2, node: 2), at(3, node: 2)])
        XCTAssertEqual(twins.sharedCPUs, [[0, 1], [2, 3]])
        XCTAssertTrue(twins.summary.hasPrefix("4 ranks x 1 thread on 2 hosts (n1 (rank 0): 2, n1 (rank 2): 2)"), twins.summary)
        XCTAssertTrue(PlacementReport([at(0, node: 0), at(1, node: 0)]).summary.hasPrefix("2 ranks x 1 thread on n1 (4 CPUs"))
    }

    func testRunStartCarriesThePlacement() throws {
        let rep = PlacementReport([place(0, [0]), place(1, [2])])
        let rec = RunStartRecord(time: 1, run: "r", phase: "pretrain", worldSize: 2, placement: rep)
        let line = try MetricsRecord.runStart(rec).jsonLine()
        XCTAssertTrue(line.contains(#""shared_cores":[[0,1]]"#), line)
        XCTAssertTrue(line.contains(#""host_cpus":4"#), line)
        XCTAssertEqual(try MetricsRecord.parse(line: line), .runStart(rec))
    }
}
