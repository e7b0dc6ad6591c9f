// Regression test for the reducer's thread lifetime: its communication thread used to
// capture the reducer unowned, so dropping a reducer could make the thread read an object
// whose deinit had begun. Thousands of reducers, each dropped at a different point of a
// step, with every core kept busy.
import Foundation
import TestSupport
import XCTest
@testable import SKESLDistributed

final class ReducerTeardownTests: XCTestCase {
    func testReducersDroppedAtAnyPointUnderLoad() throws {
        let world = try Communicator.world()
        let n = 300
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { grads.deallocate() }
        let load = BusyLoad()
        defer { load.stop() }
        var finished = 0
        for cycle in 0..<1600 {
            let progress: GradientReducer.Progress = cycle % 2 == 0 ? .poll : .thread
            let reducer = try GradientReducer(communicator: world, gradients: grads, count: n, bucketBytes: 4 * 64,
                                              progress: progress)
            for i in 0..<n { grads[i] = Float(i) }
            switch (cycle / 2) % 4 {
            case 0: break                                                  // dropped idle
            case 1: try reducer.markReady(0..<n / 2)                       // dropped mid-step, buckets in flight
            case 2: try reducer.markReady(0..<n); try reducer.finish(); finished += 1   // after a step
            default:
                try reducer.markReady(0..<n); try reducer.finish(); finished += 1
                reducer.close(); reducer.close()                           // closing twice is harmless
            }
        }
        XCTAssertEqual(finished, 800)
        XCTAssertEqual(grads[n - 1], Float(n - 1), "one rank: the sum is the value")
    }
}
