// train.shardOptimizer (ZeRO-1) through the skesl binary under mpirun: on 2 ranks the
// sharded run writes the same checkpoints, bit for bit, as the all-reduce run (a + b is
// one float whatever the algorithm, and each element's update is the same arithmetic),
// including the moments that the ranks gather for every checkpoint; a killed sharded run
// resumes bit-identically; 3 ranks agree to rounding.
import XCTest
import CLISupport
import Foundation
import SKESLHDF5
import SKESLTraining

final class ShardedTrainingTests: XCTestCase {
    let shard = ["--set", "train.shardOptimizer=true"]

    func testShardedOptimizerEqualsAllReduceBitwiseOnTwoRanks() throws {
        let h = try RunHarness("zero1")
        try h.synth(samples: 30)
        // Interval checkpoints at 2 and 4 (the moments are gathered mid-epoch), the epoch's at
        // 5, the end of the run at 6; keep them all to compare each.
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2, keepLast: 10}")
        let args = ["--max-steps", "6", "--epochs", "20"]
        let plain = try h.pretrain(cfg, np: 2, run: "plain", args)
        XCTAssertEqual(plain.status, 0, plain.err)
        let sharded = try h.pretrain(cfg, np: 2, run: "sharded", args + shard)
        XCTAssertEqual(sharded.status, 0, sharded.err)
        for step in [2, 4, 5, 6] {
            assertSameBits(try h.checkpointState(h.checkpoint(step: step, run: "sharded")), try h.checkpointState(h.checkpoint(step: step, run: "plain")),
                          "step \(step): sharded vs all-reduce")
        }
        // Training moved the moments at all (the comparison is not of zeros).
        let v = try h.checkpointState(h.checkpoint(step: 6, run: "sharded")).filter { $0.key.hasPrefix("/optimizer/exp_avg_sq/") }
        XCTAssertTrue(v.values.contains { $0.contains { $0 > 0 } })
    }

    func testKilledShardedRunResumesBitIdentically() throws {
        let h = try RunHarness("zero1-resume")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2}")
        // Every rank kills itself in step 7, after its gradients, with step 6's checkpoint on disk.
        try h.assertKilledRunResumesBitwise(cfg, shard, "sharded run killed at step 7 and resumed")
    }

    /// Three uneven shards: the reduce-scatter may group each element's three-way sum
    /// otherwise than the all-reduce, so the runs agree to rounding, not to the bit.
    func testShardedOptimizerOnThreeRanksWithClipping() throws {
        let h = try RunHarness("zero1-3")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let args = ["--max-steps", "4", "--set", "train.optimizer.clipNorm=0.05"]
        let plain = try h.pretrain(cfg, np: 3, run: "plain", args)
        XCTAssertEqual(plain.status, 0, plain.err)
        let sharded = try h.pretrain(cfg, np: 3, run: "sharded", args + shard)
        XCTAssertEqual(sharded.status, 0, sharded.err)
        let a = try h.checkpointState(h.checkpoint(step: 4, run: "sharded")), b = try h.checkpointState(h.checkpoint(step: 4, run: "plain"))
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        XCTAssertLessThan(maxRelativeDifference(a, b), 1e-4, "3 ranks: sharded vs all-reduce")
    }
}
