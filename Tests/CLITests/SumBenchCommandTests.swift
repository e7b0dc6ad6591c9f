// `skesl bench-sum` on 2 ranks: every way of summing (train.allreduce's modes) at a size that
// fits one bucket and one that splits into several with an odd tail, each sum checked by the
// command (rank r adds r + 1 everywhere), one JSON line each; the reference sizes are the
// model's trainable counts; bad arguments are refused by name.
import XCTest
import CLISupport
import Foundation

final class SumBenchCommandTests: XCTestCase {
    func testEveryWayOfSummingIsTimedAndChecked() throws {
        let h = try RunHarness("sumbench")
        let sums = ["deferred", "poll", "thread", "shm"]
        let r = try h.run(["bench-sum", "--floats", "1000", "--floats", "3000001", "--steps", "2", "--json"]
                          + sums.flatMap { ["--sum", $0] }, np: 2)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = try r.out.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.count, 8, r.out)
        XCTAssertEqual(lines.map { $0["sum"] as? String }, sums + sums)
        XCTAssertEqual(lines.map { $0["floats"] as? Int }, [1000, 1000, 1000, 1000, 3000001, 3000001, 3000001, 3000001])
        for l in lines {
            XCTAssertEqual(l["ranks"] as? Int, 2); XCTAssertEqual(l["hosts"] as? Int, 1); XCTAssertEqual(l["checked"] as? Bool, true)
            XCTAssertEqual(l["algorithm"] as? String, "default"); XCTAssertEqual(l["bucket_mb"] as? Double, 8)
            XCTAssertEqual(l["single_copy"] as? String, "default")
            XCTAssertGreaterThan(l["ms_slowest_rank"] as? Double ?? 0, 0, "\(l)")
            XCTAssertGreaterThanOrEqual(l["ms_slowest_rank"] as? Double ?? 0, l["ms_median_rank"] as? Double ?? .infinity, "\(l)")
        }
        // The table, at the reference pretraining gradient (the encoder and head: 1,963,213 floats).
        let t = try h.run(["bench-sum", "--task", "pretrain", "--steps", "1", "--sum", "deferred"], np: 2)
        XCTAssertEqual(t.status, 0, t.err)
        XCTAssertTrue(t.out.contains("bench-sum: 2 ranks on 1 host(s); Open MPI all-reduce algorithm: its own choice; "
            + "shared-memory single copy: its own choice"), t.out)
        XCTAssertTrue(t.out.contains("pretrain    1963213      7.9  deferred"), t.out)
        // Open MPI's two-copy shared memory (what a container without process_vm_readv gets): the
        // sum still checks out, and the run says which path it timed.
        let two = try h.run(["bench-sum", "--floats", "3000001", "--steps", "1", "--sum", "deferred", "--json"], np: 2,
                            environment: ["OMPI_MCA_btl_vader_single_copy_mechanism": "none"])
        XCTAssertEqual(two.status, 0, two.err)
        let line = try JSONSerialization.jsonObject(with: Data(two.out.utf8)) as? [String: Any]
        XCTAssertEqual(line?["single_copy"] as? String, "none", two.out)
        XCTAssertEqual(line?["checked"] as? Bool, true, two.out)
        let bad = try h.run(["bench-sum", "--sum", "ring"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--sum ring is not one of deferred, poll, thread, shm"), bad.err)
    }
}
