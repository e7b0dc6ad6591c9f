// Bucket layout and per-step coverage bookkeeping (no MPI involved).
import XCTest
@testable import SKESLDistributed

final class BucketLayoutTests: XCTestCase {
    func testBucketsTileTheBufferFromTheEnd() {
        for (n, b) in [(10, 3), (9, 3), (1, 5), (0, 4), (10_007, 1000), (8, 1)] {
            let layout = BucketLayout(count: n, bucketElements: b)
            XCTAssertEqual(layout.bucketCount, (n + b - 1) / b)
            var covered = [Int](repeating: 0, count: n)
            for i in 0..<layout.bucketCount {
                let r = layout.range(ofBucket: i)
                XCTAssertFalse(r.isEmpty)
                // Full buckets at the end; only the first elements form a short bucket.
                if i < layout.bucketCount - 1 { XCTAssertEqual(r.count, b) }
                for e in r { covered[e] += 1; XCTAssertEqual(layout.bucket(containing: e), i) }
            }
            XCTAssertEqual(covered, [Int](repeating: 1, count: n), "n=\(n) b=\(b)")
        }
        XCTAssertEqual(BucketLayout(count: 10, bucketElements: 3).range(ofBucket: 0), 7..<10)
        XCTAssertEqual(BucketLayout(count: 10, bucketElements: 3).range(ofBucket: 3), 0..<1)
    }

    func testCoverageCompletesBucketsWhateverTheOrder() throws {
        let layout = BucketLayout(count: 10, bucketElements: 4)  // buckets 6..<10, 2..<6, 0..<2
        var c = BucketCoverage(layout: layout)
        XCTAssertEqual(try c.mark(0..<1), [])
        XCTAssertEqual(try c.mark(3..<8), [])          // spans buckets 0 and 1
        XCTAssertEqual(try c.mark(1..<3), [1, 2])      // completes 2..<6 and 0..<2
        XCTAssertEqual(try c.mark(8..<10), [0])
        XCTAssertEqual(try c.mark(5..<5), [])          // empty ranges are harmless
        c.reset()
        XCTAssertFalse(c.isComplete(0))
        XCTAssertEqual(try c.mark(0..<10), [0, 1, 2])
    }

    func testMarkingTwiceOrOutsideIsAnErrorAndChangesNothing() throws {
        var c = BucketCoverage(layout: BucketLayout(count: 10, bucketElements: 4))
        _ = try c.mark(4..<7)
        XCTAssertThrowsError(try c.mark(1..<5)) { error in
            XCTAssertTrue("\(error)".contains("4..<5"), "\(error)")
            XCTAssertTrue("\(error)".contains("already marked"), "\(error)")
        }
        XCTAssertThrowsError(try c.mark(8..<11)) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
        // The rejected call marked nothing: 1..<4 is still free (and completes bucket 2..<6).
        XCTAssertEqual(try c.mark(1..<4), [1])
        XCTAssertEqual(c.missing(), [0..<1, 7..<10])
    }
}
