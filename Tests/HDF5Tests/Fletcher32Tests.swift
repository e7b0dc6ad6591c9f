// SKESLHDF5's vectorised Fletcher32 against HDF5's own algorithm (H5checksum.c).
import Foundation
import XCTest
import SKESLHDF5

/// HDF5's Fletcher32 (H5checksum.c), word by word: the reference the vectorised one
/// must equal, residue for residue.
func hdf5Fletcher32(_ bytes: [UInt8]) -> UInt32 {
    var sum1: UInt32 = 0, sum2: UInt32 = 0
    var len = bytes.count / 2, i = 0
    while len > 0 {
        var t = min(len, 360)
        len -= t
        repeat {
            sum1 += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2
            sum2 += sum1
            t -= 1
        } while t > 0
        sum1 = (sum1 & 0xffff) + (sum1 >> 16)
        sum2 = (sum2 & 0xffff) + (sum2 >> 16)
    }
    if bytes.count % 2 == 1 {
        sum1 += UInt32(bytes[i]) << 8
        sum2 += sum1
        sum1 = (sum1 & 0xffff) + (sum1 >> 16)
        sum2 = (sum2 & 0xffff) + (sum2 >> 16)
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16)
    sum2 = (sum2 & 0xffff) + (sum2 >> 16)
    return sum2 << 16 | sum1
}

final class Fletcher32Tests: XCTestCase {
    func residues(_ b: [UInt8]) -> (sum1: UInt32, sum2: UInt32, finite: Bool) {
        b.withUnsafeBytes { fletcher32Residues($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, bytes: b.count) }
    }

    func testEqualsHDF5sAlgorithmOnEveryLengthAndExtremeWords() {
        var g = SystemRandomNumberGenerator()
        var lengths = Array(0..<300) + [4095, 4096, 8191, 8192, 8193, 52_800, 156_000, 131_073]
        lengths += (0..<20).map { _ in Int.random(in: 1...300_000, using: &g) }
        for n in lengths {
            for fill in ["random", "ones", "zeros"] {
                let b: [UInt8]
                switch fill {
                case "random": b = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
                case "ones": b = [UInt8](repeating: 0xFF, count: n)   // every word 65535: the sums' worst case
                default: b = [UInt8](repeating: 0, count: n)
                }
                let ref = hdf5Fletcher32(b)
                let r = residues(b)
                XCTAssertEqual(r.sum1, (ref & 0xFFFF) % 65535, "sum1, \(n) bytes, \(fill)")
                XCTAssertEqual(r.sum2, (ref >> 16) % 65535, "sum2, \(n) bytes, \(fill)")
                XCTAssertTrue(fletcher32Matches(stored: ref, sum1: r.sum1, sum2: r.sum2))
                XCTAssertFalse(fletcher32Matches(stored: ref ^ 0x0001_0000, sum1: r.sum1, sum2: r.sum2))
            }
        }
    }

    func testFindsANaNOrInfinityAnywhere() {
        for n in [1, 7, 8, 9, 63, 64, 65, 13_200, 38_995] {
            let clean = (0..<n).map { Float($0 % 17) - 8.5 }
            XCTAssertTrue(clean.withUnsafeBytes { fletcher32Residues($0.baseAddress!, bytes: $0.count) }.finite)
            for pos in Set([0, n / 2, n - 1]) {
                for bad in [Float.nan, .infinity, -.infinity, Float(bitPattern: 0x7FC0_0001)] {
                    var v = clean; v[pos] = bad
                    XCTAssertFalse(v.withUnsafeBytes { fletcher32Residues($0.baseAddress!, bytes: $0.count) }.finite, "\(bad) at \(pos) of \(n)")
                }
                var big = clean; big[pos] = .greatestFiniteMagnitude
                XCTAssertTrue(big.withUnsafeBytes { fletcher32Residues($0.baseAddress!, bytes: $0.count) }.finite)
            }
        }
    }
}
