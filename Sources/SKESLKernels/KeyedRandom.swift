// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
// Every draw is a pure function of (seed, stream, sample, epoch, index), so a
// sample's shuffle position, mask and dropout pattern are the same on any rank,
// with any thread count, and after a resume.

@inline(__always)
private func mulhilo(_ a: UInt32, _ b: UInt32) -> (hi: UInt32, lo: UInt32) {
    let p = UInt64(a) &* UInt64(b)
    return (UInt32(truncatingIfNeeded: p >> 32), UInt32(truncatingIfNeeded: p))
}

/// Philox4x32-10 block function: 128-bit counter, 64-bit key -> 4 random words.
@inline(__always)
public func philox4x32(_ c0: UInt32, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32,
                       key k0: UInt32, _ k1: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
    var x0 = c0, x1 = c1, x2 = c2, x3 = c3
    var key0 = k0, key1 = k1
    for _ in 0..<10 {
        let (h0, l0) = mulhilo(0xD251_1F53, x0)
        let (h1, l1) = mulhilo(0xCD9E_8D57, x2)
        x0 = h1 ^ x1 ^ key0
        x1 = l1
        x2 = h0 ^ x3 ^ key1
        x3 = l0
        key0 = key0 &+ 0x9E37_79B9
        key1 = key1 &+ 0xBB67_AE85
    }
    return (x0, x1, x2, x3)
}

/// Eight Philox4x32-10 blocks at once (counters c0 ... c0+7 in the first word), for
/// bulk draws such as dropout masks: the same words as eight `philox4x32` calls.
@inline(__always)
public func philox4x32x8(_ c0: SIMD8<UInt32>, _ c1: UInt32, _ c2: UInt32, _ c3: UInt32,
                         key k0: UInt32, _ k1: UInt32) -> (SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>) {
    var x0 = c0, x1 = SIMD8<UInt32>(repeating: c1), x2 = SIMD8<UInt32>(repeating: c2), x3 = SIMD8<UInt32>(repeating: c3)
    var key0 = k0, key1 = k1
    for _ in 0..<10 {
        let p0 = SIMD8<UInt64>(truncatingIfNeeded: x0) &* 0xD251_1F53
        let p1 = SIMD8<UInt64>(truncatingIfNeeded: x2) &* 0xCD9E_8D57
        let h0 = SIMD8<UInt32>(truncatingIfNeeded: p0 &>> 32), l0 = SIMD8<UInt32>(truncatingIfNeeded: p0)
        let h1 = SIMD8<UInt32>(truncatingIfNeeded: p1 &>> 32), l1 = SIMD8<UInt32>(truncatingIfNeeded: p1)
        x0 = h1 ^ x1 ^ SIMD8<UInt32>(repeating: key0)
        x1 = l1
        x2 = h0 ^ x3 ^ SIMD8<UInt32>(repeating: key1)
        x3 = l0
        key0 = key0 &+ 0x9E37_79B9
        key1 = key1 &+ 0xBB67_AE85
    }
    return (x0, x1, x2, x3)
}

/// FNV-1a 64-bit: the starting value and one step, which folds a unit (a byte, a
/// character, a word: whatever the caller hashes) into the hash. The one definition of
/// FNV in the project: names, the store fingerprint, the vocabulary key, the lexicon
/// table and the mpitest replica check all fold through it.
public enum FNV1a64 {
    public static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    @inline(__always)
    public static func fold(_ h: UInt64, _ unit: UInt64) -> UInt64 { (h ^ unit) &* prime }
}

/// FNV-1a 64-bit hash of a string's UTF-8 bytes: turns a name (a parameter, a dropout
/// site) into a stream id.
public func fnv1a64(_ s: String) -> UInt64 {
    var h = FNV1a64.offsetBasis
    for b in s.utf8 { h = FNV1a64.fold(h, UInt64(b)) }
    return h
}

/// A keyed random stream: `seed` is the run's seed; `stream` names what the numbers
/// are for (a dropout site, a parameter's init, the shuffle); `sample` and `epoch`
/// say for whom and when. Element `i` of the stream is `word(i)`.
public struct KeyedRandom: Sendable {
    public let k0: UInt32, k1: UInt32
    public let c1: UInt32, c2: UInt32, c3: UInt32

    public init(seed: UInt64, stream: UInt64, sample: UInt64 = 0, epoch: UInt64 = 0) {
        // Mix the stream into the key so that distinct streams are distinct Philox keys;
        // the counter words carry sample and epoch.
        let mixed = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
        k0 = UInt32(truncatingIfNeeded: mixed)
        k1 = UInt32(truncatingIfNeeded: mixed >> 32)
        c1 = UInt32(truncatingIfNeeded: sample)
        c2 = UInt32(truncatingIfNeeded: (sample >> 32) ^ (stream >> 32))
        c3 = UInt32(truncatingIfNeeded: epoch)
    }

    public init(seed: UInt64, stream: String, sample: UInt64 = 0, epoch: UInt64 = 0) {
        self.init(seed: seed, stream: fnv1a64(stream), sample: sample, epoch: epoch)
    }

    /// Four 32-bit words for block `block` (elements 4*block ..< 4*block+4).
    @inline(__always)
    public func block(_ block: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        philox4x32(block, c1, c2, c3, key: k0, k1)
    }

    /// The i-th 32-bit word of the stream.
    @inline(__always)
    public func word(_ i: Int) -> UInt32 {
        let b = block(UInt32(truncatingIfNeeded: i >> 2))
        switch i & 3 {
        case 0: return b.0
        case 1: return b.1
        case 2: return b.2
        default: return b.3
        }
    }

    /// Uniform in [0, 1) from 24 bits (exactly representable in Float).
    @inline(__always)
    public static func unit(_ w: UInt32) -> Float { Float(w >> 8) * (1.0 / 16_777_216.0) }

    /// Uniform in (0, 1] as Double from 53 bits of two words.
    @inline(__always)
    public static func unitDouble(_ a: UInt32, _ b: UInt32) -> Double {
        let bits = (UInt64(a) << 21) ^ UInt64(b >> 11)
        return (Double(bits & ((1 << 53) - 1)) + 1.0) * (1.0 / 9_007_199_254_740_992.0)
    }

    public func uniform(_ i: Int) -> Float { KeyedRandom.unit(word(i)) }

    /// Fills `out[0..<n]` with U(lo, hi).
    public func fillUniform(_ out: UnsafeMutablePointer<Float>, _ n: Int, lo: Float, hi: Float) {
        var i = 0
        let span = hi - lo
        while i < n {
            let b = block(UInt32(truncatingIfNeeded: i >> 2))
            let w = [b.0, b.1, b.2, b.3]
            for j in 0..<4 where i + j < n { out[i + j] = lo + span * KeyedRandom.unit(w[j]) }
            i += 4
        }
    }

    /// Fills `out[0..<n]` with N(mean, std) by Box-Muller on 53-bit uniforms.
    public func fillNormal(_ out: UnsafeMutablePointer<Float>, _ n: Int, mean: Float, std: Float) {
        var i = 0
        while i < n {
            let b = block(UInt32(truncatingIfNeeded: i >> 2))
            let u1 = KeyedRandom.unitDouble(b.0, b.1)
            let u2 = KeyedRandom.unitDouble(b.2, b.3)
            let r = (-2.0 * _log(u1)).squareRoot()
            let t = 2.0 * Double.pi * u2
            out[i] = mean + std * Float(r * _cos(t))
            if i + 1 < n { out[i + 1] = mean + std * Float(r * _sin(t)) }
            i += 2
        }
    }

    /// Uniform integer in 0..<n (n > 0), unbiased by rejection over 64 bits.
    public func integer(_ i: Int, below n: Int) -> Int {
        precondition(n > 0)
        let limit = UInt64.max - UInt64.max % UInt64(n)
        var j = 0
        while true {
            let b = block(UInt32(truncatingIfNeeded: (i &* 16 &+ j) >> 0) &+ 0x8000_0000)
            let v = (UInt64(b.0) << 32) | UInt64(b.1)
            if v < limit { return Int(v % UInt64(n)) }
            let v2 = (UInt64(b.2) << 32) | UInt64(b.3)
            if v2 < limit { return Int(v2 % UInt64(n)) }
            j += 1
        }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Glibc.sin(x) }
#else
import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
@inline(__always) func _sin(_ x: Double) -> Double { Foundation.sin(x) }
#endif

/// Deterministic permutation of 0..<n keyed by (seed, stream, epoch): Fisher-Yates
/// driven by the keyed stream, the same on every rank.
public func keyedPermutation(_ n: Int, seed: UInt64, stream: String, epoch: UInt64) -> [Int] {
    var p = Array(0..<n)
    let r = KeyedRandom(seed: seed, stream: stream, sample: 0, epoch: epoch)
    if n < 2 { return p }
    for i in stride(from: n - 1, to: 0, by: -1) {
        let j = r.integer(i, below: i + 1)
        p.swapAt(i, j)
    }
    return p
}
