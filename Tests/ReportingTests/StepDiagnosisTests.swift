// The one-line verdict of a run's step times (StepDiagnosis.swift), branch by branch, on
// records made from per-rank figures: ranks that kept pace, a straggler in each part of its
// step, a straggler in forward + backward for each of the causes docs/scaling.md's table
// names, a slow sum, and a CPU quota. The real runs: StepTimeTests (a planted straggler).
import Foundation
import SKESLReporting
import XCTest

final class StepDiagnosisTests: XCTestCase {
    /// `n` ranks of 100 ms forward + 100 ms backward; `edit` changes rank figures.
    /// Part order: data, forward, backward, imbalance, allreduce, optimizer, other.
    func record(_ n: Int, cpu: [[Double]]? = nil, _ edit: (inout [[Double]]) -> Void = { _ in }) -> StepTimesRecord {
        var perRank = (0..<n).map { _ in [0.002, 0.1, 0.1, 0.0, 0.001, 0.005, 0.001] }
        edit(&perRank)
        let c = cpu ?? (0..<n).map { _ in [0.2, 1, 0.0005] }
        return StepTimesRecord.make(perRank: perRank, cpuPerRank: c, steps: Array(repeating: 5, count: n), diagnose: false, time: 1)
    }

    /// Rank 2 computes `extra` s longer; the others wait for it.
    func straggler(_ r: inout [[Double]], extra: Double = 0.1) {
        r[2][2] += extra
        for i in r.indices where i != 2 { r[i][3] = extra }
    }

    func testOneRankAndRanksThatKeptPace() {
        XCTAssertNil(record(1).diagnosis())
        XCTAssertEqual(record(4).diagnosis(), "the ranks kept pace: 0.0% of the step waiting for the slowest rank, 0.5% in the all-reduce proper")
    }

    func testAStragglerInEachPartOfItsStep() throws {
        let data = try XCTUnwrap(record(4) { r in r[2][0] = 0.08; for i in [0, 1, 3] { r[i][3] = 0.078 } }.diagnosis())
        XCTAssertTrue(data.hasPrefix("27.2% of the step waiting for the slowest rank, rank 2: its data wait took 80 ms per step against the other ranks' median of 2 ms"), data)
        let other = try XCTUnwrap(record(4) { r in r[1][6] = 0.4; for i in [0, 2, 3] { r[i][3] = 0.399 } }.diagnosis())
        XCTAssertTrue(other.contains("rank 1: its other (logging, checkpoints, evaluation, a planted delay) took 400 ms"), other)
    }

    func testWhyAStragglerComputedLonger() throws {
        // Rank 2 on its CPU 60% of its 300 ms; its other threads ran 1 ms: taken from outside.
        var cpu = (0..<4).map { _ in [0.2, 1, 0.001] }
        cpu[2] = [0.18, 40, 0.001]
        let outside = try XCTUnwrap(record(4, cpu: cpu) { straggler(&$0) }.diagnosis())
        XCTAssertTrue(outside.contains("rank 2: its forward + backward took 300 ms per step against the other ranks' median of 200 ms; it was on its CPU 60% of that time, "
                                       + "preempted 40 times per step: something outside the rank took its CPU"), outside)
        // Its own threads ran as long as it lost (120 ms).
        cpu[2] = [0.18, 40, 0.11]
        let own = try XCTUnwrap(record(4, cpu: cpu) { straggler(&$0) }.diagnosis())
        XCTAssertTrue(own.contains(": its own other threads (loader, communication, BLAS helpers) ran 110 ms meanwhile"), own)
        // A CPU quota held it back as long.
        let quota = (0..<4).map { $0 == 2 ? [0.18, 40, 0.001, 0.1] : [0.2, 1, 0.001, 0.0] }
        let held = try XCTUnwrap(record(4, cpu: quota) { straggler(&$0) }.diagnosis())
        XCTAssertTrue(held.contains(": its control group's CPU quota held it back 100 ms per step"), held)
        // It kept its CPU: a hyperthread sibling rank, or the CPU itself.
        let kept = (0..<4).map { $0 == 2 ? [0.3, 1, 0.001] : [0.2, 1, 0.001] }
        let place = { (rank: Int) in
            RankPlacement(rank: rank, host: "n", cpus: [rank], cores: ["0:\(rank / 2)"], hostCPUs: 4, hostCores: 2, threads: 1)
        }
        let siblings = try XCTUnwrap(record(4, cpu: kept) { straggler(&$0) }.diagnosis(placement: PlacementReport((0..<4).map(place))))
        XCTAssertTrue(siblings.contains("it was on its CPU 100% of that time, but it shares a physical core with rank 3 (hyperthread siblings)"), siblings)
        let slower = try XCTUnwrap(record(4, cpu: kept) { straggler(&$0) }.diagnosis())
        XCTAssertTrue(slower.hasSuffix(": the CPU itself computed slower (clock speed with every core busy, memory bandwidth, caches)"), slower)
    }

    func testASlowSumAndAQuotaOnEveryRank() throws {
        let sum = try XCTUnwrap(record(4) { r in for i in r.indices { r[i][4] = 0.02 } }.diagnosis())
        XCTAssertEqual(sum, "the all-reduce proper took 8.8% of the step: the sum itself is slow (skesl bench-sum times it alone; "
                       + "train.allreduce=shm sums in host memory)")
        let cpu = (0..<2).map { _ in [0.15, 20, 0.0, 0.05] }
        let quota = try XCTUnwrap(record(2, cpu: cpu) { r in for i in r.indices { r[i][6] = 0.05 } }.diagnosis())
        XCTAssertTrue(quota.hasPrefix("the control group's CPU quota held the ranks back 19% of the step (50 ms per step)"), quota)
        XCTAssertTrue(quota.contains("; the ranks kept pace"), quota)
        // One rank under a quota: the quota alone is said.
        XCTAssertNotNil(record(1, cpu: [[0.15, 20, 0.0, 0.05]]).diagnosis())
        // The record carries it, and the table prints it.
        var rec = record(4) { straggler(&$0) }
        rec.diagnosis = rec.diagnosis()
        XCTAssertTrue(rec.text.contains("\n  diagnosis: 32.4% of the step waiting for the slowest rank, rank 2"), rec.text)
        let line = try MetricsRecord.stepTimes(rec).jsonLine()
        XCTAssertEqual(try MetricsRecord.parse(line: line), .stepTimes(rec))
    }
}
