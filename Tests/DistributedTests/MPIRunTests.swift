// Multi-rank behaviour, checked by running skesl-mpitest under mpirun.
import XCTest

final class MPIRunTests: XCTestCase {
    private func mpirun(_ np: Int, _ args: [String], mpiArgs: [String] = [], timeout: Double = 90) throws -> ProcessResult {
        let exe = try ProcessRunner.mpitestExecutable()
        var a = ["-np", "\(np)"]
        if np > 2 { a.append("--oversubscribe") }
        // Only this machine's loopback and shared memory: no probing of other interfaces.
        a += ["--mca", "btl", "self,vader,tcp", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]
        return try ProcessRunner.run(try ProcessRunner.mpirun(), a + mpiArgs + [exe] + args, timeout: timeout)
    }

    private func lines(_ r: ProcessResult, containing s: String) -> [String] {
        r.stdout.split(separator: "\n").map(String.init).filter { $0.contains(s) }
    }

    func testCollectivesOnTwoRanks() throws {
        let r = try mpirun(2, ["collectives"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(Set(lines(r, containing: "collectives ok").map { String($0.prefix(10)) }),
                       ["rank 0/2: ", "rank 1/2: "], r.summary)
        XCTAssertTrue(r.stdout.contains("thread=MPI_THREAD_MULTIPLE"), r.summary)
    }

    func testCollectivesOnThreeRanks() throws {
        let r = try mpirun(3, ["collectives"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(lines(r, containing: "collectives ok").count, 3, r.summary)
    }

    /// Two ranks: a + b is the same float whatever the grouping, so every bucket
    /// size (1 element, primes, not dividing n, larger than n) and both progress
    /// modes must give exactly the bits of one whole-buffer all-reduce.
    func testReducerEqualsWholeAllReduceBitwiseOnTwoRanks() throws {
        for progress in ["thread", "poll"] {
            let r = try mpirun(2, ["reducer", "--n", "10007", "--buckets", "1,7,1000,4096,10007,20014",
                                   "--steps", "3", "--progress", progress, "--require-bitwise"])
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertEqual(lines(r, containing: "reducer ok").count, 2, r.summary)
            XCTAssertEqual(lines(r, containing: "bitwise_whole=true").count, 12, r.summary)
            XCTAssertEqual(lines(r, containing: "progress=\(progress)").count, 12, r.summary)
        }
    }

    /// The sharded optimiser's reduce-scatter (train.shardOptimizer): on two ranks each
    /// rank's shard holds exactly the bits of the whole all-reduce, in every progress mode
    /// and for buckets that miss a shard; the all-gather of the shards rebuilds the buffer.
    func testShardedReducerEqualsWholeAllReduceBitwiseOnTwoRanks() throws {
        for progress in ["thread", "poll", "deferred"] {
            let r = try mpirun(2, ["reducer", "--n", "10007", "--buckets", "1,7,1000,4096,10007,20014",
                                   "--steps", "3", "--progress", progress, "--shard", "--require-bitwise"])
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertEqual(lines(r, containing: "reducer ok").count, 2, r.summary)
            XCTAssertEqual(lines(r, containing: "sharded=true bitwise_whole=true").count, 12, r.summary)
        }
    }

    /// Three uneven shards (5003 = 1668 + 1668 + 1667) and buckets that fall in one, two or
    /// all three of them: integer values sum exactly, so every element must be exact.
    func testShardedReducerIsExactForIntegerValuesOnThreeRanks() throws {
        let r = try mpirun(3, ["reducer", "--n", "5003", "--buckets", "3,500,1668,5003", "--steps", "2", "--integers",
                               "--progress", "poll", "--shard"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(lines(r, containing: "reducer ok").count, 3, r.summary)
        XCTAssertEqual(lines(r, containing: "sharded=true").count, 12, r.summary)
    }

    /// Three ranks with Open MPI's ring all-reduce forced: each element's sum is
    /// grouped by its position in the message, so buckets may differ from the
    /// whole buffer in the last bit. Required: within 1e-6 of a Double reference
    /// and identical on every rank (the checker fails otherwise).
    func testReducerOnThreeRanksWithRingAllReduce() throws {
        let r = try mpirun(3, ["reducer", "--n", "30011", "--buckets", "1000,4096,30011", "--steps", "3"],
                           mpiArgs: ["--mca", "coll_tuned_use_dynamic_rules", "1",
                                     "--mca", "coll_tuned_allreduce_algorithm", "4"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(lines(r, containing: "reducer ok").count, 3, r.summary)
    }

    /// Integer-valued gradients sum exactly in any order: exact on three ranks.
    func testReducerIsExactForIntegerValuesOnThreeRanks() throws {
        let r = try mpirun(3, ["reducer", "--n", "5003", "--buckets", "3,500,5003", "--steps", "2", "--integers",
                               "--progress", "poll"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(lines(r, containing: "reducer ok").count, 3, r.summary)
    }

    /// train.allreduce=shm on two ranks: each element is a + b, so every bucket size gives
    /// the bits of one whole MPI all-reduce, summed whole or into ZeRO-1 shards, with the
    /// gradients copied in or computed in the shared block (--in-place, as the trainer does).
    func testSharedMemorySumEqualsWholeAllReduceBitwiseOnTwoRanks() throws {
        for extra in [[], ["--shard"], ["--in-place"], ["--in-place", "--shard"]] {
            let r = try mpirun(2, ["reducer", "--n", "10007", "--buckets", "1,7,1000,4096,10007,20014",
                                   "--steps", "3", "--progress", "shm", "--require-bitwise"] + extra)
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertEqual(lines(r, containing: "reducer ok").count, 2, r.summary)
            XCTAssertEqual(lines(r, containing: "bitwise_whole=true sum=\"shared memory, 1 host x 2 ranks\" in_place=\(extra.contains("--in-place"))").count,
                           12, r.summary)
        }
    }

    /// Three and five ranks on one host, buckets cut into uneven parts (and parts of zero
    /// elements when a bucket is shorter than the rank count): integer values are exact.
    func testSharedMemorySumIsExactForIntegerValuesOnThreeAndFiveRanks() throws {
        for (np, extra) in [(3, []), (3, ["--shard"]), (3, ["--in-place", "--shard"]), (5, ["--in-place"])] {
            let r = try mpirun(np, ["reducer", "--n", "5003", "--buckets", "3,500,1668,5003", "--steps", "3", "--integers",
                                    "--progress", "shm"] + extra)
            XCTAssertEqual(r.status, 0, r.summary)
            XCTAssertEqual(lines(r, containing: "reducer ok").count, np, r.summary)
            XCTAssertEqual(lines(r, containing: "sum=\"shared memory, 1 host x \(np) ranks\"").count, 4 * np, r.summary)
        }
    }

    /// Three ranks, real values: within 1e-6 of the Double reference and identical on every
    /// rank (the checker fails otherwise).
    func testSharedMemorySumOnThreeRanks() throws {
        let r = try mpirun(3, ["reducer", "--n", "30011", "--buckets", "1000,4096,30011", "--steps", "3", "--progress", "shm"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(lines(r, containing: "reducer ok").count, 3, r.summary)
    }

    /// A rank that dies or stalls while the others wait in the shared-memory sum (which
    /// spins outside MPI): the launcher ends the job, or the watchdog aborts it, promptly.
    func testRankDyingOrStallingDuringTheSharedMemorySumEndsTheJob() throws {
        let exited = try mpirun(2, ["die", "--how", "exit", "--after", "0.5", "--progress", "shm"], timeout: 60)
        XCTAssertFalse(exited.timedOut, exited.summary)
        XCTAssertEqual(exited.status, 3, exited.summary)
        XCTAssertTrue(exited.stdout.contains("rank 0/2: waiting in all-reduce (shared memory)"), exited.summary)
        XCTAssertLessThan(exited.seconds, 30, exited.summary)
        let killed = try mpirun(3, ["die", "--how", "kill", "--after", "0.5", "--progress", "shm"], timeout: 60)
        XCTAssertFalse(killed.timedOut, killed.summary)
        XCTAssertNotEqual(killed.status, 0, killed.summary)
        XCTAssertLessThan(killed.seconds, 30, killed.summary)
        let stalled = try mpirun(2, ["watchdog", "--seconds", "1", "--stall", "120", "--progress", "shm"], timeout: 60)
        XCTAssertFalse(stalled.timedOut, stalled.summary)
        XCTAssertEqual(stalled.status, 124, stalled.summary)
        XCTAssertTrue(stalled.stderr.contains("watchdog: shared-memory gradient sum"), stalled.summary)
        XCTAssertLessThan(stalled.seconds, 30, stalled.summary)
    }

    func testRankExitingMidAllReduceFailsTheJobPromptly() throws {
        let r = try mpirun(2, ["die", "--how", "exit", "--after", "0.5"], timeout: 60)
        XCTAssertFalse(r.timedOut, r.summary)
        XCTAssertEqual(r.status, 3, "mpirun returns the dead rank's exit code\n" + r.summary)
        XCTAssertTrue(r.stdout.contains("rank 0/2: waiting in all-reduce"), r.summary)
        XCTAssertLessThan(r.seconds, 30, r.summary)
    }

    func testRankKilledMidAllReduceFailsTheJobPromptly() throws {
        let r = try mpirun(3, ["die", "--how", "kill", "--after", "0.5"], timeout: 60)
        XCTAssertFalse(r.timedOut, r.summary)
        XCTAssertNotEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.contains("rank 0/3: waiting in all-reduce"), r.summary)
        XCTAssertTrue(r.stderr.contains("signal 9"), r.summary)
        XCTAssertLessThan(r.seconds, 30, r.summary)
    }

    func testWatchdogAbortsAJobWhoseAllReduceHangs() throws {
        let r = try mpirun(2, ["watchdog", "--seconds", "1", "--stall", "120"], timeout: 60)
        XCTAssertFalse(r.timedOut, r.summary)
        XCTAssertEqual(r.status, 124, r.summary)
        XCTAssertTrue(r.stderr.contains("rank 0 of 2"), r.summary)
        XCTAssertTrue(r.stderr.contains("watchdog: MPI_Allreduce of 4096 bytes has not finished"), r.summary)
        XCTAssertLessThan(r.seconds, 30, r.summary)
    }
}
