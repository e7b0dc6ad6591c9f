// A control group's CPU quota (CPUQuota) read from fixture /proc and cgroup trees: cgroup v2
// with the limit on an ancestor, a container that sees its own group as the mount's root,
// cgroup v1's cpu,cpuacct hierarchy, a hybrid host whose v2 tree has no cpu controller, no
// limit at all; the throttled time; and what the placement report makes of it. The trainer
// on a real quota: PlacementRunTests.testACPUQuotaIsReportedAndItsThrottlingMeasured.
import Foundation
import SKESLReporting
import XCTest

final class CPUQuotaTests: XCTestCase {
    /// A fixture root with /proc/self/cgroup, /proc/self/mountinfo and the given files.
    func tree(cgroup: String, mountinfo: String, files: [String: String]) throws -> String {
        let root = NSTemporaryDirectory() + "cpuquota-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/proc/self", withIntermediateDirectories: true)
        try cgroup.write(toFile: root + "/proc/self/cgroup", atomically: true, encoding: .utf8)
        try mountinfo.write(toFile: root + "/proc/self/mountinfo", atomically: true, encoding: .utf8)
        for (path, text) in files {
            try fm.createDirectory(atPath: root + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: root + path, atomically: true, encoding: .utf8)
        }
        addTeardownBlock { try? fm.removeItem(atPath: root) }
        return root
    }

    static let v2Mount = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"

    func testV2TakesTheLowestLimitOfTheGroupAndItsAncestors() throws {
        let g = "/sys/fs/cgroup/kubepods/pod1"
        let root = try tree(cgroup: "0::/kubepods/pod1/c1\n", mountinfo: "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" + Self.v2Mount, files: [
            g + "/c1/cpu.max": "max 100000\n",
            g + "/cpu.max": "1200000 100000\n",            // the pod: 12 CPUs
            "/sys/fs/cgroup/kubepods/cpu.max": "max 100000\n",
            g + "/cpu.stat": "usage_usec 99\nnr_periods 40\nnr_throttled 7\nthrottled_usec 250000\n",
        ])
        let q = try XCTUnwrap(CPUQuota.read(root: root))
        XCTAssertEqual(q.cpus, 12); XCTAssertEqual(q.group, "/kubepods/pod1"); XCTAssertEqual(q.version, "v2")
        XCTAssertEqual(try XCTUnwrap(q.throttledSeconds()), 0.25, accuracy: 1e-12)
        XCTAssertEqual(q.description, "12 CPUs (cgroup v2 /kubepods/pod1)")
        // Its own limit, lower than the pod's, wins.
        try "150000 100000".write(toFile: root + g + "/c1/cpu.max", atomically: true, encoding: .utf8)
        XCTAssertEqual(CPUQuota.read(root: root)?.cpus, 1.5)
        XCTAssertEqual(CPUQuota.read(root: root)?.group, "/kubepods/pod1/c1")
        XCTAssertNil(CPUQuota.read(root: root)?.throttledSeconds(), "c1 has no cpu.stat in the fixture")
    }

    func testAContainerSeesItsGroupAsTheMountRoot() throws {
        // Without a cgroup namespace the process names its full path, and the container's
        // mount shows that path as its root; with one it names "/".
        let mount = "40 30 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n"
        for path in ["/docker/abc", "/"] {
            let root = try tree(cgroup: "0::\(path)\n", mountinfo: mount, files: ["/sys/fs/cgroup/cpu.max": "200000 100000\n"])
            let q = try XCTUnwrap(CPUQuota.read(root: root), path)
            XCTAssertEqual(q.cpus, 2); XCTAssertEqual(q.group, "/docker/abc")
        }
    }

    func testV1CPUHierarchyAndAHybridHost() throws {
        // A hybrid host: v2 mounted without the cpu controller (no cpu.max), v1's cpu,cpuacct with the limit.
        let mountinfo = """
        25 24 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
        26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
        32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
        33 25 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset

        """
        let g = "/sys/fs/cgroup/cpu,cpuacct/slurm/job7"
        let root = try tree(cgroup: "5:cpuset:/\n4:cpu,cpuacct:/slurm/job7\n0::/slurm/job7\n", mountinfo: mountinfo, files: [
            g + "/cpu.cfs_quota_us": "400000\n", g + "/cpu.cfs_period_us": "100000\n",
            g + "/cpu.stat": "nr_periods 12\nnr_throttled 3\nthrottled_time 1500000000\n",
            "/sys/fs/cgroup/cpu,cpuacct/slurm/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu,cpuacct/slurm/cpu.cfs_period_us": "100000\n",
        ])
        let q = try XCTUnwrap(CPUQuota.read(root: root))
        XCTAssertEqual(q.cpus, 4); XCTAssertEqual(q.version, "v1"); XCTAssertEqual(q.group, "/slurm/job7")
        XCTAssertEqual(try XCTUnwrap(q.throttledSeconds()), 1.5, accuracy: 1e-12)
    }

    func testNoLimitAndMountPathsWithSpaces() throws {
        XCTAssertNil(CPUQuota.read(root: try tree(cgroup: "0::/user.slice\n", mountinfo: Self.v2Mount,
                                                  files: ["/sys/fs/cgroup/user.slice/cpu.max": "max 100000\n"])))
        XCTAssertNil(CPUQuota.read(root: try tree(cgroup: "", mountinfo: "", files: [:])))
        XCTAssertNil(CPUQuota.read(root: "/nonexistent-\(UUID().uuidString)"))
        let spaced = "30 24 0:26 / /mnt/c\\040g rw - cgroup2 cgroup2 rw\n"
        let root = try tree(cgroup: "0::/a\n", mountinfo: spaced, files: ["/mnt/c g/a/cpu.max": "50000 100000\n"])
        XCTAssertEqual(CPUQuota.read(root: root)?.cpus, 0.5)
    }

    func testPlacementReportNamesAQuotaBelowWhatTheRanksNeed() throws {
        func place(_ rank: Int, _ quota: CPUQuota?, threads: Int = 1) -> RankPlacement {
            RankPlacement(rank: rank, host: "n1", cpus: [rank], cores: ["0:\(rank)"], hostCPUs: 4, hostCores: 4, threads: threads, quota: quota)
        }
        let half = CPUQuota(cpus: 1.5, group: "/job", version: "v1")
        let over = PlacementReport([place(0, half), place(1, half)])
        XCTAssertEqual(over.overQuota, [0, 1])
        XCTAssertTrue(over.summary.hasSuffix("; 2 rank(s) need more CPUs than their control group's quota allows (1.5 CPUs (cgroup v1 /job)): "
                                             + "the kernel will stop them in every period they exceed it"), over.summary)
        // Enough for the ranks, but below the CPUs they may run on: named, not a finding.
        let two = CPUQuota(cpus: 2, group: "/job", version: "v2")
        let fits = PlacementReport([place(0, two, threads: 1), place(1, two, threads: 1)].map { var p = $0; p.cpus = [0, 1, 2]; return p })
        XCTAssertEqual(fits.overQuota, [])
        XCTAssertTrue(fits.summary.contains("; CPU quota 2 CPUs (cgroup v2 /job)"), fits.summary)
        // A quota above the ranks' CPUs changes nothing and is not named; no quota at all: nil.
        let big = PlacementReport([place(0, CPUQuota(cpus: 64, group: "/", version: "v2"))])
        XCTAssertEqual(big.overQuota, []); XCTAssertFalse(big.summary.contains("quota"), big.summary)
        XCTAssertNil(PlacementReport([place(0, nil)]).overQuota)
        // It travels in run_start and back.
        let line = try MetricsRecord.runStart(RunStartRecord(time: 1, run: "r", phase: "pretrain", worldSize: 2, placement: over)).jsonLine()
        XCTAssertTrue(line.contains(#""cpu_quota":{"#), line)
        XCTAssertTrue(line.contains(#""over_quota":[0,1]"#), line)
        guard case .runStart(let back) = try MetricsRecord.parse(line: line) else { return XCTFail(line) }
        XCTAssertEqual(back.placement?.ranks[0].quota, half)
    }
}
