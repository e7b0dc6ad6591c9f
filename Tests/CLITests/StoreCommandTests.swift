// `skesl store inspect` and `skesl store verify` through the binary, on a store whose rows are
// stored one per chunk (as at reference shapes), with its chunk index.
import XCTest
import CLISupport
import Foundation
import SKESLReporting

final class StoreCommandTests: XCTestCase {
    func testInspectAndVerifyAStoreWithAChunkIndex() throws {
        let h = try RunHarness("storecmd")
        let s = try h.run(["synth", "--out", h.dir + "/store", "--samples", "20", "--audio-frames", "6", "--audio-dim", "5",
                           "--video-frames", "4", "--video-dim", "7", "--samples-per-shard", "8", "--seed", "3", "--chunk-bytes", "1"])
        XCTAssertEqual(s.status, 0, s.err)
        let i = try h.run(["store", "inspect", h.dir + "/store"])
        XCTAssertEqual(i.status, 0, i.err)
        for part in ["/audio: float32 [8, 6, 5], chunk [1, 6, 5], filters fletcher32", "/chunk_index/audio: uint64 [8]",
                     "/chunk_index/video: uint64 [8]", "sample 0 \"synth-3-0\""] {
            XCTAssertTrue(i.out.contains(part), "\(part) missing from:\n\(i.out)")
        }
        let v = try h.run(["store", "verify", h.dir + "/store"])
        XCTAssertEqual(v.status, 0, v.out + v.err)
    }
}
