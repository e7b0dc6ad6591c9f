// Cluster/launch.sh, and a real 2-host job across two network namespaces.
import XCTest

final class ClusterTests: XCTestCase {
    private var launch: String { ProcessRunner.repoRoot.appendingPathComponent("Cluster/launch.sh").path }
    private var netns: String { ProcessRunner.repoRoot.appendingPathComponent("scripts/netns-mpi-run.sh").path }

    func testLaunchBuildsPlacementThreadsAndEnvironment() throws {
        let hostfile = ProcessRunner.repoRoot.appendingPathComponent("Cluster/hostfile.example").path
        let r = try ProcessRunner.run(launch, ["--dry-run", "--hostfile", hostfile, "--per-node", "2", "--threads", "4",
                                               "-x", "EXTRA=1", "--exe", "/bin/true", "--", "train", "--config", "a b.yaml"],
                                      environment: ["SKESL_MPI_WATCHDOG": "600"])
        XCTAssertEqual(r.status, 0, r.summary)
        let cmd = r.stdout
        XCTAssertTrue(cmd.contains("-np 4 "), "2 hosts x 2 per node\n" + cmd)
        XCTAssertTrue(cmd.contains("--map-by ppr:2:node:PE=4 --bind-to core"), cmd)
        XCTAssertTrue(cmd.contains("-x OPENBLAS_NUM_THREADS=4 -x OMP_NUM_THREADS=4"), cmd)
        XCTAssertTrue(cmd.contains("-x SKESL_MPI_WATCHDOG "), cmd)
        XCTAssertTrue(cmd.contains("-x EXTRA=1 "), cmd)
        XCTAssertTrue(cmd.hasSuffix("/bin/true train --config a\\ b.yaml \n"), cmd)
        XCTAssertEqual(cmd.contains("--allow-run-as-root"), getuid() == 0, cmd)
    }

    /// Without --np or --per-node the launcher fills this node, one rank per T physical cores;
    /// ranks x threads beyond the cores but within the CPUs (hyperthreads) bind to hardware
    /// threads, which Open MPI otherwise refuses. A 16-CPU node of 8 cores x 2 stands in here.
    func testLaunchFillsTheNodeAndUsesHyperthreadsOnlyBeyondTheCores() throws {
        let node = ["LAUNCH_TEST_NODE_CPUS": "16", "LAUNCH_TEST_NODE_CORES": "8", "LAUNCH_TEST_NODE_QUOTA": ""]
        func dry(_ args: [String], _ env: [String: String] = node) throws -> ProcessResult {
            let r = try ProcessRunner.run(launch, ["--dry-run"] + args + ["--exe", "/bin/true", "--", "x"], environment: env)
            XCTAssertEqual(r.status, 0, r.summary)
            return r
        }
        var r = try dry([])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 8 --map-by ppr:8:node --bind-to core "), r.summary)
        XCTAssertTrue(r.stderr.contains("8 rank(s) of 1 thread(s): this node's 8 physical cores (16 CPUs) full"), r.summary)
        r = try dry(["--threads", "2"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 4 --map-by ppr:4:node:PE=2 --bind-to core "), r.summary)
        r = try dry(["-n", "16"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 16 --use-hwthread-cpus --map-by slot --bind-to hwthread "), r.summary)
        XCTAssertTrue(r.stderr.contains("exceed this node's 8 cores: bound to hardware threads"), r.summary)
        r = try dry(["-n", "4", "--threads", "3"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 4 --use-hwthread-cpus --map-by slot:PE=3 --bind-to hwthread "), r.summary)
        // A CPU quota (a container's limit) below the cores: the node full is the quota's whole
        // CPUs; a count beyond the quota is warned of, one within it not; a quota above the CPUs
        // changes nothing.
        var quota = node; quota["LAUNCH_TEST_NODE_QUOTA"] = "6.5"
        r = try dry([], quota)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 6 --map-by ppr:6:node --bind-to core "), r.summary)
        XCTAssertTrue(r.stderr.contains("6 rank(s) of 1 thread(s): this node's control group may use 6.5 CPUs' time (a CPU quota) of its 16 CPUs"), r.summary)
        XCTAssertFalse(r.stderr.contains("warning"), r.summary)
        XCTAssertEqual(try ProcessRunner.run(launch, ["--node-info"], environment: quota).stdout, "cpus 16 cores 8 quota 6.5 usable 6\n")
        XCTAssertEqual(try ProcessRunner.run(launch, ["--node-info"], environment: node).stdout, "cpus 16 cores 8 quota none usable 16\n")
        r = try dry(["--threads", "2"], quota)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 3 --map-by ppr:3:node:PE=2 --bind-to core "), r.summary)
        r = try dry(["-n", "8"], quota)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 8 --map-by slot --bind-to core "), r.summary)
        XCTAssertTrue(r.stderr.contains("warning: 8 rank(s) x 1 thread(s) want more than this node's CPU quota of 6.5 CPUs"), r.summary)
        quota["LAUNCH_TEST_NODE_QUOTA"] = "0.5"
        XCTAssertTrue(try dry([], quota).stdout.hasPrefix("mpirun -np 1 "), "at least one rank")
        quota["LAUNCH_TEST_NODE_QUOTA"] = "32"
        r = try dry([], quota)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 8 --map-by ppr:8:node --bind-to core "), r.summary)
        XCTAssertFalse(r.stderr.contains("quota"), r.summary)
        // Beyond the CPUs, or a binding the user chose: left to the user and Open MPI.
        r = try dry(["-n", "17"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 17 --map-by slot --bind-to core "), r.summary)
        r = try dry(["-n", "16", "--bind", "core"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 16 --map-by slot --bind-to core "), r.summary)
        r = try dry(["-n", "2", "--bind", "hwthread"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 2 --use-hwthread-cpus --map-by slot --bind-to hwthread "), r.summary)
        // A hostfile's nodes may differ from this one: its slots decide.
        let hostfile = ProcessRunner.repoRoot.appendingPathComponent("Cluster/hostfile.example").path
        r = try dry(["--hostfile", hostfile, "-n", "16"])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 16 --hostfile \(hostfile) --map-by slot --bind-to core "), r.summary)
        r = try dry(["--hostfile", hostfile])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun --hostfile \(hostfile) --map-by slot --bind-to core "), r.summary)
        XCTAssertTrue(r.stderr.contains("one rank per slot of \(hostfile)"), r.summary)
        // This machine, counted apart from the launcher: its physical cores among the CPUs it may use.
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let allowed = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }!.split(separator: "\t").last!
        var cores = Set<String>(), cpus = 0
        for part in allowed.split(separator: ",") {
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces))! }
            for cpu in ends[0]...ends[ends.count - 1] {
                cpus += 1
                let t = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
                let core = try String(contentsOfFile: t + "core_id", encoding: .utf8), pkg = try String(contentsOfFile: t + "physical_package_id", encoding: .utf8)
                cores.insert(pkg.trimmingCharacters(in: .whitespacesAndNewlines) + ":" + core.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        r = try dry([], [:])
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np \(cores.count) --map-by ppr:\(cores.count):node --bind-to core "), r.summary)
        XCTAssertTrue(r.stderr.contains("this node's \(cores.count) physical cores (\(cpus) CPUs)"), r.summary)
    }

    func testLaunchRejectsBadOptionsWithAMessage() throws {
        for (args, message) in [(["--threads", "0"], "--threads must be a positive integer"),
                                (["--frobnicate"], "unknown option --frobnicate"),
                                (["--bind", "cores"], "--bind must be core, hwthread, socket or none, got 'cores'"),
                                (["--hostfile", "/nonexistent/hosts"], "hostfile /nonexistent/hosts is not readable"),
                                (["--exe", "/nonexistent/skesl"], "program /nonexistent/skesl is not executable")] {
            let r = try ProcessRunner.run(launch, ["--dry-run"] + args + (args.contains("--exe") ? [] : ["--exe", "/bin/true"]))
            XCTAssertEqual(r.status, 2, r.summary)
            XCTAssertTrue(r.stderr.contains(message), r.summary)
        }
    }

    func testLaunchRunsARealTwoRankJob() throws {
        let r = try ProcessRunner.run(launch, ["--np", "2", "--mca", "btl", "self,vader",
                                               "--exe", try ProcessRunner.mpitestExecutable(), "--", "collectives"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout.components(separatedBy: "collectives ok").count - 1, 2, r.summary)
    }

    /// Where the environment already forwards variables through mca_base_env_list (the
    /// bundle's `run` wrapper does), Open MPI refuses -x: the launcher then adds its variables
    /// to that list, and every rank still sees them.
    func testLaunchForwardsThroughAnEnvListWhereOneIsSet() throws {
        let env = ["OMPI_MCA_mca_base_env_list": "PATH;OPENBLAS_NUM_THREADS", "SKESL_LAUNCH_PROBE": "seen"]
        let args = ["--np", "2", "--threads", "1", "--bind", "none", "--oversubscribe", "-x", "EXTRA=1", "--exe", "/bin/sh", "--",
                    "-c", "echo probe T=$OPENBLAS_NUM_THREADS O=$OMP_NUM_THREADS S=$SKESL_LAUNCH_PROBE E=$EXTRA"]
        let dry = try ProcessRunner.run(launch, ["--dry-run"] + args, environment: env)
        XCTAssertEqual(dry.status, 0, dry.summary)
        XCTAssertFalse(dry.stdout.contains(" -x "), dry.stdout)
        // The list keeps what it had and gains each name once (SKESL_* variables of the test's own environment too).
        XCTAssertTrue(dry.stdout.contains(#"OMPI_MCA_mca_base_env_list=PATH\;OPENBLAS_NUM_THREADS\;OMP_NUM_THREADS\;"#), dry.stdout)
        XCTAssertTrue(dry.stdout.contains(#"\;SKESL_LAUNCH_PROBE\;"#) && dry.stdout.contains(#"\;EXTRA mpirun "#), dry.stdout)
        XCTAssertTrue(dry.stdout.hasPrefix("env OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 EXTRA=1 "), dry.stdout)
        let r = try ProcessRunner.run(launch, args, environment: env)
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout.components(separatedBy: "probe T=1 O=1 S=seen E=1\n").count - 1, 2, r.summary)
    }

    private func runAcrossNamespaces(_ args: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        let r = try ProcessRunner.run(netns, [try ProcessRunner.mpitestExecutable()] + args, environment: environment, timeout: 120)
        if r.status == 77 { throw XCTSkip("two-host test skipped: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
        return r
    }

    /// Rank 0 in one namespace, rank 1 in the other, talking TCP over the veth only.
    func testTwoHostJobAcrossNetworkNamespaces() throws {
        let c = try runAcrossNamespaces(["collectives"])
        XCTAssertEqual(c.status, 0, c.summary)
        XCTAssertTrue(c.stdout.contains("rank 0/2: collectives ok") && c.stdout.contains("addrs=198.18.0.1\n"), c.summary)
        XCTAssertTrue(c.stdout.contains("rank 1/2: collectives ok") && c.stdout.contains("addrs=198.18.0.2\n"), c.summary)

        let r = try runAcrossNamespaces(["reducer", "--n", "100003", "--buckets", "1000,65536,100003",
                                         "--steps", "2", "--require-bitwise"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout.components(separatedBy: "reducer ok").count - 1, 2, r.summary)
    }

    /// train.allreduce=shm across two hosts: each host sums in its shared memory, then rank l
    /// of each host all-reduces its part with rank l of the other over TCP. One rank per
    /// host (MPI only, a + b: bitwise), two per host (both levels; integer values exact,
    /// real ones within 1e-6 and identical on every rank; whole and ZeRO-1 shards).
    func testSharedMemorySumAcrossTwoHosts() throws {
        let one = try runAcrossNamespaces(["reducer", "--n", "100003", "--buckets", "1000,65536,100003", "--steps", "2",
                                           "--progress", "shm", "--require-bitwise"])
        XCTAssertEqual(one.status, 0, one.summary)
        XCTAssertEqual(one.stdout.components(separatedBy: "reducer ok").count - 1, 2, one.summary)
        XCTAssertTrue(one.stdout.contains("sum=\"shared memory, 2 hosts x 1 rank, MPI between hosts\""), one.summary)
        for extra in [["--integers"], ["--integers", "--shard", "--in-place"], ["--shard"], ["--in-place"]] {
            let r = try runAcrossNamespaces(["reducer", "--n", "100003", "--buckets", "1000,65536,100003", "--steps", "2",
                                             "--progress", "shm"] + extra, environment: ["SKESL_NETNS_PER_HOST": "2"])
            XCTAssertEqual(r.status, 0, "\(extra)\n" + r.summary)
            XCTAssertEqual(r.stdout.components(separatedBy: "reducer ok").count - 1, 4, r.summary)
            XCTAssertTrue(r.stdout.contains("sum=\"shared memory, 2 hosts x 2 ranks, MPI between hosts\""), r.summary)
        }
    }

    /// Uneven hosts (2 + 1 ranks) cannot split parts evenly: every rank says so and how to fix it.
    func testSharedMemorySumRefusesUnevenHosts() throws {
        let r = try runAcrossNamespaces(["reducer", "--n", "1003", "--buckets", "1003", "--steps", "1", "--progress", "shm"],
                                        environment: ["SKESL_NETNS_PER_HOST": "2", "SKESL_NETNS_NP": "3", "SKESL_KILL_GRACE": "1"])
        XCTAssertNotEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stderr.contains("needs the same number of ranks on every host; ranks per host here: 2, 2, 1"), r.summary)
        XCTAssertTrue(r.stderr.contains("train.allreduce=auto"), r.summary)
    }

    /// A failing job fails the script, and its namespaces are gone afterwards.
    func testNamespacesAreRemovedWhenTheJobFails() throws {
        let exe = try ProcessRunner.mpitestExecutable()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: netns)
        p.arguments = [exe, "die", "--how", "exit"]
        // The survivor has nothing to save: no grace period before it is killed.
        p.environment = ProcessInfo.processInfo.environment.merging(
            ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "SKESL_KILL_GRACE": "1"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(90)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { p.terminate(); p.waitUntilExit(); return XCTFail("netns job did not end within 90 s") }
        p.waitUntilExit()
        if p.terminationStatus == 77 { throw XCTSkip("network namespaces unavailable") }
        XCTAssertEqual(p.terminationStatus, 3, "the dead rank's exit code comes through")
        let list = try ProcessRunner.run("/usr/bin/env", ["ip", "netns", "list"])
        XCTAssertFalse(list.stdout.contains("skesl-\(p.processIdentifier)-"), list.stdout)
    }
}
