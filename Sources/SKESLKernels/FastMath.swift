// Fast exp and erf for the element-wise passes (GELU's erf form is the largest
// non-matrix cost of a BERT step: glibc's scalar erff takes ~10 ns an element here).
// Written as branch-free scalar code that LLVM vectorises in the loops that call it
// (generic SIMD conversions in Swift are not lowered to vector instructions).
//   exp: x = k·ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial to r^7 (relative error
//        below 2e-7 after float rounding), 2^k built in the exponent bits.
//   erf: two least-squares fits made for this file (scripts/fit_erf.py): a P(a^2) for
//        |x| <= 1 and 1 - e^(-x^2) R(|x|) up to 4; absolute error about 1.3e-7 in float
//        (glibc's erff: about 3e-8); odd symmetry for x < 0.

@inline(__always)
public func fastExp(_ xIn: Float) -> Float {
    let x = Swift.min(Swift.max(xIn, -87.3), 88.7)
    let k = (x * 1.4426950408889634).rounded(.toNearestOrEven)
    // Cody-Waite: ln2 split in a part exact in float and a small correction.
    let r = (x - k * 0.693145751953125) - k * 1.428606765330187e-06
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let scale = Float(bitPattern: UInt32(truncatingIfNeeded: Int32(k) &+ 127) &<< 23)
    return p * scale
}

@inline(__always)
public func fastErf(_ x: Float) -> Float {
    let a = Swift.abs(x)
    // |x| <= 1: erf = a P(a^2), least-squares fit of degree 5 in a^2.
    let t = a * a
    var pa: Float = -5.5554815628e-04
    pa = pa * t + 4.8942367997e-03
    pa = pa * t - 2.6685363287e-02
    pa = pa * t + 1.1278917515e-01
    pa = pa * t - 3.7612074784e-01
    pa = pa * t + 1.1283789812
    let small = a * pa
    // 1 < |x| <= 4: erf = 1 - e^(-a^2) R(a), R = erfc(a) e^(a^2) fitted in u = (a - 2.5)/1.5
    // (degree 10); past 4, erf rounds to 1 in float.
    let b = Swift.min(Swift.max(a, 1), 4)
    let u = (b - 2.5) * (1 / 1.5)
    var r: Float = 9.4589305189e-05
    r = r * u - 2.4063001861e-04
    r = r * u + 3.7204958782e-04
    r = r * u - 9.2556365927e-04
    r = r * u + 2.4225502079e-03
    r = r * u - 5.6050136559e-03
    r = r * u + 1.2485106797e-02
    r = r * u - 2.6999448583e-02
    r = r * u + 5.6110840146e-02
    r = r * u - 1.1152129421e-01
    r = r * u + 2.1080635957e-01
    let large = 1 - fastExp(-b * b) * r
    let y = a > 1 ? large : small
    return Float(bitPattern: y.bitPattern | (x.bitPattern & 0x8000_0000))
}

public enum FastMath {
    public static func exp(_ y: FPtr, _ x: CFPtr, count n: Int) { for i in 0..<n { y[i] = fastExp(x[i]) } }
    public static func erf(_ y: FPtr, _ x: CFPtr, count n: Int) { for i in 0..<n { y[i] = fastErf(x[i]) } }
}
