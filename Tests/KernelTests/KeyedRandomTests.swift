import XCTest
import SKESLKernels

final class KeyedRandomTests: XCTestCase {
    func testPhiloxKnownAnswer() {
        // Random123's published known-answer vectors for Philox4x32-10.
        let z = philox4x32(0, 0, 0, 0, key: 0, 0)
        XCTAssertEqual([z.0, z.1, z.2, z.3], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let f = philox4x32(0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, key: 0xffff_ffff, 0xffff_ffff)
        XCTAssertEqual([f.0, f.1, f.2, f.3], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
    }

    /// FNV-1a 64's published test vectors: stream ids, the store fingerprint and the
    /// vocabulary key are stored in checkpoints and caches, so the hash must not move.
    func testFNV1aKnownAnswers() {
        XCTAssertEqual(fnv1a64(""), 0xCBF2_9CE4_8422_2325)
        XCTAssertEqual(fnv1a64("a"), 0xAF63_DC4C_8601_EC8C)
        XCTAssertEqual(fnv1a64("foobar"), 0x8594_4171_F739_67E8)
        XCTAssertEqual(FNV1a64.fold(FNV1a64.offsetBasis, UInt64(UInt8(ascii: "a"))), fnv1a64("a"))
    }

    func testStreamsAreDeterministicAndDistinct() {
        let a = KeyedRandom(seed: 1, stream: "x", sample: 5, epoch: 2)
        let b = KeyedRandom(seed: 1, stream: "x", sample: 5, epoch: 2)
        XCTAssertEqual((0..<16).map { a.word($0) }, (0..<16).map { b.word($0) })
        for other in [KeyedRandom(seed: 2, stream: "x", sample: 5, epoch: 2), KeyedRandom(seed: 1, stream: "y", sample: 5, epoch: 2),
                      KeyedRandom(seed: 1, stream: "x", sample: 6, epoch: 2), KeyedRandom(seed: 1, stream: "x", sample: 5, epoch: 3)] {
            XCTAssertNotEqual((0..<8).map { a.word($0) }, (0..<8).map { other.word($0) })
        }
    }

    func testDistributions() {
        let n = 100_000
        let p = UnsafeMutablePointer<Float>.allocate(capacity: n); defer { p.deallocate() }
        KeyedRandom(seed: 3, stream: "n").fillNormal(p, n, mean: 0, std: 0.02)
        var s = 0.0, q = 0.0
        for i in 0..<n { s += Double(p[i]); q += Double(p[i]) * Double(p[i]) }
        XCTAssertEqual(s / Double(n), 0, accuracy: 3e-4)
        XCTAssertEqual((q / Double(n)).squareRoot(), 0.02, accuracy: 3e-4)
        KeyedRandom(seed: 3, stream: "u").fillUniform(p, n, lo: -1, hi: 1)
        var lo: Float = 1, hi: Float = -1
        for i in 0..<n { lo = min(lo, p[i]); hi = max(hi, p[i]) }
        XCTAssertGreaterThanOrEqual(lo, -1); XCTAssertLessThan(hi, 1); XCTAssertLessThan(lo, -0.99); XCTAssertGreaterThan(hi, 0.99)
    }

    func testPermutation() {
        let p = keyedPermutation(1000, seed: 4, stream: "shuffle", epoch: 0)
        XCTAssertEqual(p.sorted(), Array(0..<1000))
        XCTAssertEqual(p, keyedPermutation(1000, seed: 4, stream: "shuffle", epoch: 0))
        XCTAssertNotEqual(p, keyedPermutation(1000, seed: 4, stream: "shuffle", epoch: 1))
        XCTAssertNotEqual(p, Array(0..<1000))
    }
}

final class PhiloxVectorTests: XCTestCase {
    func testEightLanesEqualEightScalarBlocks() {
        let base: UInt32 = 0xFFFF_FFF9   // counters that wrap around
        let v = philox4x32x8(SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7) &+ base, 11, 22, 33, key: 0xDEAD_BEEF, 0x1234_5678)
        for l in 0..<8 {
            let s = philox4x32(base &+ UInt32(l), 11, 22, 33, key: 0xDEAD_BEEF, 0x1234_5678)
            XCTAssertEqual([v.0[l], v.1[l], v.2[l], v.3[l]], [s.0, s.1, s.2, s.3])
        }
    }
}
