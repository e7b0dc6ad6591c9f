// HDF5's Fletcher32 checksum, vectorised, fused with a test that every float is finite.
//
// HDF5 (H5checksum.c) sums big-endian 16-bit words: sum1 = Σ w_i, sum2 = Σ (n - i) w_i,
// both folded mod 65535 (ones' complement), and appends sum2 << 16 | sum1 to the chunk. Its
// scalar loop runs at about 5 GB/s here, which made it the loader's largest cost.
//
// Here the bytes are read as little-endian 32-bit lanes, 8 at a time, with no byte swap:
// since 2^16 ≡ 1 (mod 65535), the big-endian word b0 b1 is ≡ 256 · (b0 + 256 b1), that is
// 256 times the lane's low half `lo`, and likewise the next word is ≡ 256 · `hi`. Per lane
// j, A sums the halves and B the A seen before each round, so over K rounds (word
// i = 16k + 2j for lo, one more for hi, weight n - i)
//   sum1 ≡ 256 Σ_j (A_lo + A_hi)
//   sum2 ≡ 256 Σ_j [16 (A_lo + B_lo + A_hi + B_hi) - 2j A_lo - (2j + 1) A_hi].
// Rounds go in blocks of 256, short enough that B cannot overflow 32 bits, and blocks
// combine exactly mod 65535: sum2 += n_block · sum1 + sum2_block. The same lanes, read as
// floats, are NaN or infinite when their exponent bits are all ones.

/// Fletcher32 of `bytes` bytes as HDF5 computes it, as residues mod 65535 of its two
/// halves, and whether the bytes, read as Float32, hold no NaN or infinity (meaningful
/// when `bytes` is a multiple of 4).
public func fletcher32Residues(_ p: UnsafeRawPointer, bytes: Int) -> (sum1: UInt32, sum2: UInt32, finite: Bool) {
    fletcher32Pass(p, bytes: bytes, copyTo: nil)
}

/// The same, while copying the bytes to `dst` in the same pass (one read of the source).
public func fletcher32Copy(from p: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, bytes: Int) -> (sum1: UInt32, sum2: UInt32, finite: Bool) {
    fletcher32Pass(p, bytes: bytes, copyTo: dst)
}

@inline(__always)
private func fletcher32Pass(_ p: UnsafeRawPointer, bytes: Int, copyTo dst: UnsafeMutableRawPointer?) -> (sum1: UInt32, sum2: UInt32, finite: Bool) {
    let lanes = bytes / 32
    var s1: UInt64 = 0, s2: UInt64 = 0
    var exponents = SIMD8<UInt32>(repeating: 0)
    let low = SIMD8<UInt32>(repeating: 0xFFFF)
    let expMask = SIMD8<UInt32>(repeating: 0x7F80_0000), expCarry = SIMD8<UInt32>(repeating: 0x0080_0000)
    var done = 0
    while done < lanes {
        let rounds = min(lanes - done, 256)
        var aLo = SIMD8<UInt32>(repeating: 0), aHi = SIMD8<UInt32>(repeating: 0)
        var bLo = SIMD8<UInt32>(repeating: 0), bHi = SIMD8<UInt32>(repeating: 0)
        var q = p + 32 * done
        for _ in 0..<rounds {
            let x = q.loadUnaligned(as: SIMD8<UInt32>.self)
            if let d = dst { d.storeBytes(of: x, toByteOffset: p.distance(to: q), as: SIMD8<UInt32>.self) }
            // (Plain assignments: the compound SIMD operators were left as calls here.)
            bLo = bLo &+ aLo; bHi = bHi &+ aHi
            aLo = aLo &+ (x & low)
            aHi = aHi &+ (x &>> 16)
            // Adding one unit of the exponent carries into bit 31 only from all ones.
            exponents = exponents | ((x & expMask) &+ expCarry)
            q += 32
        }
        var sumA: UInt64 = 0, sumB: UInt64 = 0, weighted: UInt64 = 0
        for j in 0..<8 {
            let al = UInt64(aLo[j]), ah = UInt64(aHi[j])
            sumA += al + ah
            sumB += UInt64(bLo[j]) + UInt64(bHi[j])
            weighted += UInt64(2 * j) * al + UInt64(2 * j + 1) * ah
        }
        let blockS1 = (256 * (sumA % 65535)) % 65535
        let blockS2 = (256 * ((16 * (sumA + sumB) - weighted) % 65535)) % 65535
        let n = UInt64(rounds * 16) % 65535
        s2 = (s2 + n * s1 + blockS2) % 65535
        s1 = (s1 + blockS1) % 65535
        done += rounds
    }
    if let d = dst, bytes > 32 * lanes { d.advanced(by: 32 * lanes).copyMemory(from: p + 32 * lanes, byteCount: bytes - 32 * lanes) }
    // The tail, word by word, and an odd last byte as HDF5 treats it (high byte of a word).
    var w = lanes * 16
    var tail = p + 32 * lanes
    while w < bytes / 2 {
        s1 += UInt64(tail.load(as: UInt8.self)) << 8 | UInt64(tail.load(fromByteOffset: 1, as: UInt8.self))
        s2 += s1
        tail += 2; w += 1
    }
    if bytes % 2 == 1 { s1 += UInt64(tail.load(as: UInt8.self)) << 8; s2 += s1 }
    var finite = (exponents & SIMD8<UInt32>(repeating: 0x8000_0000)) == SIMD8<UInt32>(repeating: 0)
    if finite {
        for i in (8 * lanes)..<(bytes / 4) where (p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) & 0x7F80_0000) == 0x7F80_0000 {
            finite = false; break
        }
    }
    return (UInt32(s1 % 65535), UInt32(s2 % 65535), finite)
}

/// True when `stored` (the 4 bytes HDF5 appends to a chunk, as a little-endian integer)
/// is the Fletcher32 whose residues are given. HDF5 keeps each half in 0...65535, where 0
/// and 65535 are the same residue.
@inline(__always)
public func fletcher32Matches(stored: UInt32, sum1: UInt32, sum2: UInt32) -> Bool {
    (stored & 0xFFFF) % 65535 == sum1 && (stored >> 16) % 65535 == sum2
}
