// train.allreduce=shm (the gradient sum in host shared memory) through the skesl binary
// under mpirun: on 2 ranks every element is a + b, the bits of any all-reduce, so the run
// writes the same checkpoints bit for bit as the MPI run, with and without the sharded
// optimiser; a killed run resumes bit-identically and leaves no shared-memory file behind;
// a shared-memory directory that is missing or too small stops every rank with a message
// naming the fix before any step.
import XCTest
import CLISupport
import Foundation
import SKESLHDF5
import SKESLTraining

final class SharedMemoryTrainingTests: XCTestCase {
    let shm = ["--set", "train.allreduce=shm"]

    func command(_ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// A shared-memory directory of this test's own, so that leftovers can be seen.
    func shmDir(_ h: RunHarness) throws -> String {
        let d = h.dir + "/shm-files"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func testSharedMemorySumEqualsAllReduceBitwiseOnTwoRanks() throws {
        let h = try RunHarness("shm")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2, keepLast: 10}")
        // Small buckets: several per step, so buckets finish during backward and are summed there.
        let args = ["--max-steps", "6", "--epochs", "20", "--set", "train.bucketMB=0.05"]
        let plain = try h.pretrain(cfg, np: 2, run: "plain", args)
        XCTAssertEqual(plain.status, 0, plain.err)
        let dir = try shmDir(h)
        let summed = try h.pretrain(cfg, np: 2, run: "shm", args + shm, environment: ["SKESL_SHM_DIR": dir])
        XCTAssertEqual(summed.status, 0, summed.err)
        XCTAssertTrue(summed.err.contains("gradient sum: shared memory, 1 host x 2 ranks"), summed.err)
        let both = try h.pretrain(cfg, np: 2, run: "shm-zero1", args + shm + ["--set", "train.shardOptimizer=true"],
                                environment: ["SKESL_SHM_DIR": dir])
        XCTAssertEqual(both.status, 0, both.err)
        for step in [2, 4, 5, 6] {
            let reference = try h.checkpointState(h.checkpoint(step: step, run: "plain"))
            assertSameBits(try h.checkpointState(h.checkpoint(step: step, run: "shm")), reference, "step \(step): shm vs MPI all-reduce")
            assertSameBits(try h.checkpointState(h.checkpoint(step: step, run: "shm-zero1")), reference, "step \(step): shm + ZeRO-1 vs MPI all-reduce")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "the shared-memory file is unlinked")

        // Gradient accumulation into the shared block, and a last micro-batch with no sample on
        // rank 1 (3 samples in 2 micro-batches per rank: 1 + 1 and 1 + none).
        let split = args + ["--set", "train.globalBatch=3", "--set", "train.microBatches=2"]
        let plainSplit = try h.pretrain(cfg, np: 2, run: "plain-split", split)
        XCTAssertEqual(plainSplit.status, 0, plainSplit.err)
        let shmSplit = try h.pretrain(cfg, np: 2, run: "shm-split", split + shm, environment: ["SKESL_SHM_DIR": dir])
        XCTAssertEqual(shmSplit.status, 0, shmSplit.err)
        assertSameBits(try h.checkpointState(h.checkpoint(step: 6, run: "shm-split")),
                       try h.checkpointState(h.checkpoint(step: 6, run: "plain-split")), "micro-batches and an empty one: shm vs MPI")
    }

    func testKilledSharedMemoryRunResumesBitIdenticallyAndLeavesNothingBehind() throws {
        let h = try RunHarness("shm-resume")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig(extra: "checkpoint: {everySteps: 2}")
        let dir = try shmDir(h)
        try h.assertKilledRunResumesBitwise(cfg, shm, environment: ["SKESL_SHM_DIR": dir], afterKill: {
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "kill -9 leaves no shared-memory file")
        }, "shm run killed at step 7 and resumed")
    }

    func testMissingSharedMemoryDirectoryStopsEveryRankWithTheFix() throws {
        let h = try RunHarness("shm-missing")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let r = try h.pretrain(cfg, np: 2, run: "run", ["--max-steps", "2"] + shm,
                             environment: ["SKESL_SHM_DIR": h.dir + "/no-such-dir"])
        XCTAssertNotEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("no-such-dir is not usable for shared memory"), r.err)
        XCTAssertTrue(r.err.contains("SKESL_SHM_DIR") && r.err.contains("train.allreduce=auto"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.checkpoint(step: 1)), r.err)
    }

    /// A tmpfs too small for the buffers (a container's small /dev/shm): an error before the
    /// first step, not a SIGBUS when a page is first touched. Needs mount (root).
    func testFullSharedMemoryIsAnErrorNotACrash() throws {
        let h = try RunHarness("shm-full")
        try h.synth(samples: 30)
        let cfg = try h.writeConfig()
        let mnt = h.dir + "/tiny"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard try command(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", mnt]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (needs root)")
        }
        defer { _ = try? command(["umount", mnt]) }
        let r = try h.pretrain(cfg, np: 2, run: "run", ["--max-steps", "2"] + shm, environment: ["SKESL_SHM_DIR": mnt])
        XCTAssertNotEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("has no room for the shared-memory gradient sum"), r.err)
        XCTAssertTrue(r.err.contains("--shm-size"), r.err)
        XCTAssertFalse(r.err.contains("Signal 7") || r.err.contains("Bus error"), r.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mnt), [])
    }
}
