// The same API in one process without mpirun: Open MPI's singleton world of size 1.
import XCTest
import COpenMPI
import CShim
@testable import SKESLDistributed

final class SingleProcessTests: XCTestCase {
    func testSingletonWorldHasOneRankAndThreadMultiple() throws {
        let world = try Communicator.world()
        XCTAssertEqual(world.rank, 0)
        XCTAssertEqual(world.size, 1)
        // The reducer's communication thread relies on it.
        XCTAssertEqual(world.threadLevel, .multiple)
        XCTAssertTrue(try Communicator.world() === world, "one world per process")
    }

    func testCollectivesOnOneRankLeaveDataAsIs() throws {
        let world = try Communicator.world()
        try world.barrier()
        var v: [Float] = [1.5, -2, 3]
        try world.allReduce(&v, .sum)
        XCTAssertEqual(v, [1.5, -2, 3])
        XCTAssertEqual(try world.allReduce(Int64(7), .max), 7)
        XCTAssertEqual(try world.broadcast("héllo"), "héllo")
        XCTAssertEqual(try world.allGather(Double(2.5)), [2.5])
        XCTAssertEqual(try world.allGather("only"), ["only"])
        XCTAssertThrowsError(try world.broadcast(Int64(1), root: 1)) {
            XCTAssertTrue("\($0)".contains("root 1 is not a rank"), "\($0)")
        }
    }

    /// MPI_ERRORS_RETURN is in force: a bad call comes back as a Swift error
    /// carrying MPI's own message instead of aborting the process.
    func testMPIFailuresBecomeSwiftErrorsWithMPIMessage() throws {
        let world = try Communicator.world()
        var x: Int32 = 0
        XCTAssertThrowsError(try world.call("MPI_Bcast", bytes: 4) { MPI_Bcast(&x, 1, skesl_mpi_int(), 5, world.comm) }) { error in
            guard let e = error as? MPIError else { return XCTFail("not an MPIError: \(error)") }
            XCTAssertEqual(e.call, "MPI_Bcast")
            XCTAssertTrue(e.message.lowercased().contains("root"), e.message)
        }
    }

    func testReducerOnOneRankIsReusableAndAcceptsAnyMarkOrder() throws {
        let world = try Communicator.world()
        let n = 1001
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { grads.deallocate() }
        for progress in GradientReducer.Progress.allCases {
            let reducer = try GradientReducer(communicator: world, gradients: grads, count: n, bucketBytes: 4 * 64,
                                              progress: progress)
            XCTAssertEqual(reducer.buckets.count, 16)
            XCTAssertEqual(reducer.buckets.first, 937..<1001)
            XCTAssertEqual(reducer.buckets.last, 0..<41)
            for step in 0..<3 {
                for i in 0..<n { grads[i] = Float(i * (step + 1)) }
                var pieces = stride(from: 0, to: n, by: 37).map { $0..<min(n, $0 + 37) }
                if step == 1 { pieces.reverse() }
                if step == 2 { pieces.shuffle() }
                for p in pieces { try reducer.markReady(p) }
                try reducer.finish()
                for i in 0..<n where grads[i] != Float(i * (step + 1)) { XCTFail("element \(i) changed"); break }
            }
            // bucketReady covers a bucket at once.
            for i in 0..<reducer.buckets.count { try reducer.bucketReady(i) }
            try reducer.finish()
            reducer.close()
        }
    }

    func testReducerRejectsMisuseWithClearErrorsAndRecovers() throws {
        let world = try Communicator.world()
        let n = 100
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: n)
        grads.initialize(repeating: 1, count: n)
        defer { grads.deallocate() }
        // Every engine: the MPI one in each progress mode and the shared-memory one.
        for progress in GradientReducer.Progress.allCases {
            let reducer = try GradientReducer(communicator: world, gradients: grads, count: n, bucketBytes: 4 * 30,
                                              progress: progress)
            try reducer.markReady(50..<100)
            XCTAssertThrowsError(try reducer.markReady(90..<95)) { XCTAssertTrue("\($0)".contains("already marked"), "\(progress): \($0)") }
            XCTAssertThrowsError(try reducer.bucketReady(4)) { XCTAssertTrue("\($0)".contains("no bucket 4"), "\(progress): \($0)") }
            try reducer.markReady(0..<20)
            XCTAssertThrowsError(try reducer.finish()) { error in
                XCTAssertTrue("\(error)".contains("20..<50"), "\(progress): \(error)")
            }
            // The failed step was discarded; the next one works.
            try reducer.markReady(0..<100)
            try reducer.finish()
            reducer.close()
            XCTAssertThrowsError(try reducer.markReady(0..<1)) { XCTAssertTrue("\($0)".contains("closed"), "\(progress): \($0)") }
            XCTAssertThrowsError(try GradientReducer(communicator: world, gradients: grads, count: n, bucketBytes: 3,
                                                     progress: progress))
        }
    }
}
