// Vectorised exp and erf for the element-wise passes (GELU's erf form is the largest
// non-matrix cost of a BERT step: glibc's scalar erff takes ~10 ns an element here).
//   exp: x = k·ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial to r^7 (relative error
//        below 2e-7 after float rounding), 2^k built in the exponent bits.
//   erf: two least-squares fits made for this file (scripts/fit_erf.py): a P(a^2) for
//        |x| <= 1 and 1 - e^(-x^2) R(|x|) up to 4; absolute error about 1.3e-7 in float
//        (glibc's erff: about 3e-8); odd symmetry for x < 0.

public typealias F8 = SIMD8<Float>

@inline(__always)
public func exp8(_ xIn: F8) -> F8 {
    let x = xIn.clamped(lowerBound: F8(repeating: -87.3), upperBound: F8(repeating: 88.7))
    let k = (x * 1.4426950408889634).rounded(.toNearestOrEven)
    // Cody-Waite: ln2 split in a part exact in float and a small correction.
    let r = (x - k * 0.693145751953125) - k * 1.428606765330187e-06
    var p = F8(repeating: 1.0 / 5040)
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let ki = SIMD8<Int32>(k) &+ 127
    let scale = unsafeBitCast(ki &<< 23, to: F8.self)
    return p * scale
}

@inline(__always)
public func erf8(_ x: F8) -> F8 {
    let bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
    let signBits = bits & 0x8000_0000
    let a = unsafeBitCast(bits & 0x7FFF_FFFF, to: F8.self)
    // |x| <= 1: erf = a P(a^2), least-squares fit of degree 5 in a^2.
    let t = a * a
    var pa = F8(repeating: -5.5554815628e-04)
    pa = pa * t + F8(repeating: 4.8942367997e-03)
    pa = pa * t + F8(repeating: -2.6685363287e-02)
    pa = pa * t + F8(repeating: 1.1278917515e-01)
    pa = pa * t + F8(repeating: -3.7612074784e-01)
    pa = pa * t + F8(repeating: 1.1283789812)
    let small = a * pa
    // 1 < |x| <= 4: erf = 1 - e^(-a^2) R(a), R = erfc(a) e^(a^2) fitted in u = (a - 2.5)/1.5
    // (degree 10); past 4, erf rounds to 1 in float.
    let b = a.clamped(lowerBound: F8(repeating: 1), upperBound: F8(repeating: 4))
    let u = (b - 2.5) * (1 / 1.5)
    var r = F8(repeating: 9.4589305189e-05)
    r = r * u + F8(repeating: -2.4063001861e-04)
    r = r * u + F8(repeating: 3.7204958782e-04)
    r = r * u + F8(repeating: -9.2556365927e-04)
    r = r * u + F8(repeating: 2.4225502079e-03)
    r = r * u + F8(repeating: -5.6050136559e-03)
    r = r * u + F8(repeating: 1.2485106797e-02)
    r = r * u + F8(repeating: -2.6999448583e-02)
    r = r * u + F8(repeating: 5.6110840146e-02)
    r = r * u + F8(repeating: -1.1152129421e-01)
    r = r * u + F8(repeating: 2.1080635957e-01)
    let large = 1 - exp8(-b * b) * r
    let y = small.replacing(with: large, where: a .> 1)
    return unsafeBitCast(unsafeBitCast(y, to: SIMD8<UInt32>.self) | signBits, to: F8.self)
}

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }
@inline(__always)
func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self) }

public enum FastMath {
    /// Element-wise exp / erf over buffers (tails padded through a small vector).
    public static func exp(_ y: FPtr, _ x: CFPtr, count n: Int) { map(y, x, n, exp8) }
    public static func erf(_ y: FPtr, _ x: CFPtr, count n: Int) { map(y, x, n, erf8) }

    @inline(__always)
    static func map(_ y: FPtr, _ x: CFPtr, _ n: Int, _ f: (F8) -> F8) {
        var i = 0
        while i + 8 <= n { store8(f(load8(x + i)), y + i); i += 8 }
        if i < n {
            var v = F8(repeating: 0)
            for j in 0..<(n - i) { v[j] = x[i + j] }
            let r = f(v)
            for j in 0..<(n - i) { y[i + j] = r[j] }
        }
    }
}
