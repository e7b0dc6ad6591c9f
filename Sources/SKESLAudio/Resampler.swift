// Band-limited resampling with a Kaiser-windowed sinc table, interpolated linearly
// between table entries: the algorithm of resampy 0.2.2, which librosa 0.9.1 used for
// `load` (filter "kaiser_best") and inside the constant-Q transform ("kaiser_fast").
//
// Parity notes (why the loops look the way they do):
// - resampy accumulates into a float32 output array, so every tap's product is added in
//   double and the sum rounded back to float32 before the next tap. We keep that rounding:
//   it is part of the reference's result (up to 1e-7 relative on each sample).
// - The time register advances by repeated addition of 1/ratio (not t/ratio), as resampy does.
// - The table is built here from its definition (sinc * Kaiser window) rather than read from
//   resampy's stored .npz; the two agree to 2.2e-16 (checked when the fixtures were written).
import Foundation

public struct ResampleFilter: Sendable {
    /// Half of the symmetric interpolation window, `zeros * precision + 1` entries.
    public let halfWindow: [Double]
    /// Table entries per zero crossing.
    public let precision: Int

    /// librosa's BW_FASTEST: kaiser_fast's roll-off, the band the constant-Q filters may use.
    public static let bwFastest = 0.85

    /// resampy's "kaiser_best": 64 zero crossings, Kaiser beta 14.7697, roll-off 0.9476.
    public static let kaiserBest = ResampleFilter(zeros: 64, precisionBits: 9, beta: 14.769656459379492, rolloff: 0.9475937167399596)
    /// resampy's "kaiser_fast": 16 zero crossings, Kaiser beta 8.5555, roll-off 0.85.
    public static let kaiserFast = ResampleFilter(zeros: 16, precisionBits: 9, beta: 8.555504641634386, rolloff: 0.85)

    public init(zeros: Int, precisionBits: Int, beta: Double, rolloff: Double) {
        precision = 1 << precisionBits
        let n = precision * zeros
        // Kaiser window of 2n+1 points (symmetric), second half; I0 by its power series,
        // which converges to double precision for these betas.
        func besselI0(_ x: Double) -> Double {
            var sum = 1.0, term = 1.0, k = 1.0
            let q = x * x / 4
            while true {
                term *= q / (k * k)
                sum += term
                if term < sum * 1e-17 { break }
                k += 1
            }
            return sum
        }
        let m = 2 * n + 1
        let alpha = Double(m - 1) / 2
        let i0b = besselI0(beta)
        let step = Double(zeros) / Double(n)   // linspace(0, zeros, n + 1)
        var w = [Double](repeating: 0, count: n + 1)
        for i in 0...n {
            let k = Double(i + n)
            let r = (k - alpha) / alpha
            let taper = besselI0(beta * (1 - r * r).squareRoot()) / i0b
            let x = rolloff * (i == n ? Double(zeros) : Double(i) * step)
            let px = Double.pi * (x == 0 ? 1e-20 : x)
            w[i] = taper * (rolloff * (sin(px) / px))
        }
        halfWindow = w
    }
}

public enum ResampleError: Error, CustomStringConvertible {
    case tooShort(samples: Int, from: Double, to: Double)
    public var description: String {
        switch self {
        case let .tooShort(n, a, b): return "a signal of \(n) samples is too short to resample from \(a) Hz to \(b) Hz"
        }
    }
}

/// Precomputed table (scaled for one ratio) and its first differences.
public final class Resampler {
    public let ratio: Double
    let win: [Double]
    let delta: [Double]
    let precision: Int

    public init(from: Double, to: Double, filter: ResampleFilter) {
        ratio = to / from
        precision = filter.precision
        var w = filter.halfWindow
        if ratio < 1 { for i in w.indices { w[i] *= ratio } }
        var d = [Double](repeating: 0, count: w.count)
        for i in 0..<(w.count - 1) { d[i] = w[i + 1] - w[i] }
        win = w; delta = d
        // The same tables by phase: row p holds entries p, p + step, p + 2 step, ... so that
        // one output's taps are contiguous (a row is 0.5 KB; the plain table strides 4 KB).
        let step = Int(min(1.0, ratio) * Double(filter.precision))
        let tp = (w.count + step - 1) / step
        var pw = [Double](repeating: 0, count: (step + 1) * tp), pd = pw
        for p in 0...step { for i in 0..<tp where p + i * step < w.count { pw[p * tp + i] = w[p + i * step]; pd[p * tp + i] = d[p + i * step] } }
        phaseWin = pw; phaseDelta = pd; tapsPerPhase = tp
    }
    let phaseWin: [Double]
    let phaseDelta: [Double]
    let tapsPerPhase: Int

    /// Where output sample t reads: the input index n, and for the left (i) and right (k)
    /// wings the table offset, the interpolation weight eta and the number of taps.
    struct Tap { var n: Int; var offL: Int; var etaL: Double; var iMax: Int; var offR: Int; var etaR: Double; var kMax: Int }

    /// resampy's output: floor(n * ratio) samples.
    ///
    /// Eight output samples are computed side by side: each keeps resampy's own order of taps
    /// (left wing, then right wing) and its float32 rounding after every tap, so the result is
    /// the same, but eight independent rounding chains in SIMD lanes keep the core busy where
    /// one chain would wait on each addition's latency.
    public func resampy(_ x: UnsafeBufferPointer<Float>, into y: UnsafeMutablePointer<Float>, count nOut: Int) {
        let scale = min(1.0, ratio)
        let timeIncrement = 1.0 / ratio
        let indexStep = Int(scale * Double(precision))
        let nwin = win.count
        let nOrig = x.count
        var timeRegister = 0.0
        func tap() -> Tap {
            let n = Int(timeRegister)
            var frac = scale * (timeRegister - Double(n))
            var indexFrac = frac * Double(precision)
            let offL = Int(indexFrac)
            let etaL = indexFrac - Double(offL)
            let iMax = min(n + 1, (nwin - offL) / indexStep)
            frac = scale - frac
            indexFrac = frac * Double(precision)
            let offR = Int(indexFrac)
            let etaR = indexFrac - Double(offR)
            let kMax = max(0, min(nOrig - n - 1, (nwin - offR) / indexStep))
            timeRegister += timeIncrement
            return Tap(n: n, offL: offL, etaL: etaL, iMax: iMax, offR: offR, etaR: etaR, kMax: kMax)
        }
        let tapsPerPhase = self.tapsPerPhase
        phaseWin.withUnsafeBufferPointer { pwp in
          phaseDelta.withUnsafeBufferPointer { pdp in
            let pw = pwp.baseAddress!, pd = pdp.baseAddress!
        win.withUnsafeBufferPointer { wp in
            delta.withUnsafeBufferPointer { dp in
                let w = wp.baseAddress!, d = dp.baseAddress!, xs = x.baseAddress!
                @inline(__always) func left(_ p: Tap, _ i: Int, _ acc: Float) -> Float {
                    let idx = p.offL + i * indexStep
                    return Float(Double(acc) + (w[idx] + p.etaL * d[idx]) * Double(xs[p.n - i]))
                }
                @inline(__always) func right(_ p: Tap, _ k: Int, _ acc: Float) -> Float {
                    let idx = p.offR + k * indexStep
                    return Float(Double(acc) + (w[idx] + p.etaR * d[idx]) * Double(xs[p.n + k + 1]))
                }
                var t = 0
                // Eight output samples per step as SIMD lanes: the lanes' taps are gathered one
                // by one, the arithmetic (double, then rounded to float32) runs on all eight.
                var ps = [Tap](repeating: Tap(n: 0, offL: 0, etaL: 0, iMax: 0, offR: 0, etaR: 0, kMax: 0), count: 8)
                while t + 8 <= nOut {
                    for j in 0..<8 { ps[j] = tap() }
                    var acc = SIMD8<Float>(repeating: 0)
                    var li = Int.max, lk = Int.max
                    var offL = SIMD8<Int>(), offR = SIMD8<Int>(), n = SIMD8<Int>()
                    var etaL = SIMD8<Double>(), etaR = SIMD8<Double>()
                    for j in 0..<8 {
                        li = min(li, ps[j].iMax); lk = min(lk, ps[j].kMax)
                        offL[j] = ps[j].offL; offR[j] = ps[j].offR; n[j] = ps[j].n
                        etaL[j] = ps[j].etaL; etaR[j] = ps[j].etaR
                    }
                    li = max(li, 0)
                    var wv = SIMD8<Double>(), dv = SIMD8<Double>(), xv = SIMD8<Double>()
                    let rowL = offL &* tapsPerPhase, rowR = offR &* tapsPerPhase
                    for i in 0..<li {
                        for j in 0..<8 {
                            let idx = rowL[j] + i
                            wv[j] = pw[idx]; dv[j] = pd[idx]; xv[j] = Double(xs[n[j] - i])
                        }
                        acc = SIMD8<Float>(SIMD8<Double>(acc) + (wv + etaL * dv) * xv)
                    }
                    for j in 0..<8 { var a = acc[j]; for i in li..<max(li, ps[j].iMax) { a = left(ps[j], i, a) }; acc[j] = a }
                    for k in 0..<lk {
                        for j in 0..<8 {
                            let idx = rowR[j] + k
                            wv[j] = pw[idx]; dv[j] = pd[idx]; xv[j] = Double(xs[n[j] + k + 1])
                        }
                        acc = SIMD8<Float>(SIMD8<Double>(acc) + (wv + etaR * dv) * xv)
                    }
                    for j in 0..<8 { var a = acc[j]; for k in lk..<max(lk, ps[j].kMax) { a = right(ps[j], k, a) }; y[t + j] = a }
                    t += 8
                }
                while t < nOut {
                    let p = tap()
                    var a: Float = 0
                    for i in 0..<max(0, p.iMax) { a = left(p, i, a) }
                    for k in 0..<p.kMax { a = right(p, k, a) }
                    y[t] = a
                    t += 1
                }
            }
        }
          }
        }
    }

    /// Halving (ratio 1/2, the constant-Q transform's octave step): output t sits exactly on
    /// input 2t, so every output uses the same taps (table offsets 0 and precision/2, no
    /// interpolation) and the filter is a plain FIR. Sixteen outputs run side by side with
    /// contiguous loads from the even and odd input samples; each output keeps resampy's tap
    /// order and per-tap float32 rounding, so the result equals `resampy` exactly.
    func halve(_ x: UnsafeBufferPointer<Float>, into y: UnsafeMutablePointer<Float>, count nOut: Int) {
        precondition(ratio == 0.5)
        let indexStep = Int(0.5 * Double(precision))
        let offR = Int(0.5 * Double(precision))
        let nwin = win.count, nOrig = x.count
        let L = nwin / indexStep, R = (nwin - offR) / indexStep
        // Weights: w + eta * d with eta = 0 is w itself (0 * d adds a signed zero).
        let wl = (0..<L).map { win[$0 * indexStep] }
        let wr = (0..<R).map { win[offR + $0 * indexStep] }
        let nE = (nOrig + 1) / 2, nO = nOrig / 2
        var xe = [Double](repeating: 0, count: nE), xo = [Double](repeating: 0, count: max(nO, 1))
        for q in 0..<nE { xe[q] = Double(x[2 * q]) }
        for q in 0..<nO { xo[q] = Double(x[2 * q + 1]) }
        func scalar(_ t: Int) -> Float {
            let n = 2 * t
            var a: Float = 0
            let iMax = min(n + 1, L), kMax = max(0, min(nOrig - n - 1, R))
            for i in 0..<iMax { a = Float(Double(a) + wl[i] * Double(x[n - i])) }
            for k in 0..<kMax { a = Float(Double(a) + wr[k] * Double(x[n + k + 1])) }
            return a
        }
        // Outputs t..t+15 are interior when all have L left and R right taps.
        let first = (L - 1 + 1) / 2                      // 2t + 1 >= L
        let last = (nOrig - 1 - R) / 2                   // 2t + 1 + R <= nOrig for every lane
        var t = 0
        while t < min(first, nOut) { y[t] = scalar(t); t += 1 }
        xe.withUnsafeBufferPointer { ep in
            xo.withUnsafeBufferPointer { op in
                let e = ep.baseAddress!, o = op.baseAddress!
                @inline(__always) func load(_ p: UnsafePointer<Double>, _ at: Int) -> (SIMD8<Double>, SIMD8<Double>) {
                    let r = UnsafeRawPointer(p + at)
                    return (r.loadUnaligned(as: SIMD8<Double>.self), r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Double>.self))
                }
                while t + 15 <= last && t + 16 <= nOut {
                    var a0 = SIMD8<Float>(repeating: 0), a1 = SIMD8<Float>(repeating: 0)
                    for i in 0..<L {
                        let m = i / 2
                        let (x0, x1) = i % 2 == 0 ? load(e, t - m) : load(o, t - m - 1)
                        let w = wl[i]
                        a0 = SIMD8<Float>(SIMD8<Double>(a0) + w * x0)
                        a1 = SIMD8<Float>(SIMD8<Double>(a1) + w * x1)
                    }
                    for k in 0..<R {
                        let m = k / 2
                        let (x0, x1) = k % 2 == 0 ? load(o, t + m) : load(e, t + m + 1)
                        let w = wr[k]
                        a0 = SIMD8<Float>(SIMD8<Double>(a0) + w * x0)
                        a1 = SIMD8<Float>(SIMD8<Double>(a1) + w * x1)
                    }
                    for j in 0..<8 { y[t + j] = a0[j]; y[t + 8 + j] = a1[j] }
                    t += 16
                }
            }
        }
        while t < nOut { y[t] = scalar(t); t += 1 }
    }

    /// librosa 0.9.1's `resample(y, orig_sr, target_sr, res_type, fix=True, scale=...)`:
    /// resampy's floor(n*ratio) samples zero-padded to ceil(n*ratio); with `scale`, divided
    /// by sqrt(ratio) in float32 (numpy casts the scalar to the array's type).
    public func librosa(_ x: [Float], scale: Bool = false) throws -> [Float] {
        let nResampy = Int(Double(x.count) * ratio)
        guard nResampy >= 1 else { throw ResampleError.tooShort(samples: x.count, from: 1, to: ratio) }
        let nOut = Int((Double(x.count) * ratio).rounded(.up))
        var y = [Float](repeating: 0, count: nOut)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer {
                if ratio == 0.5 { halve(xp, into: $0.baseAddress!, count: min(nResampy, nOut)) }
                else { resampy(xp, into: $0.baseAddress!, count: min(nResampy, nOut)) }
            }
        }
        if scale {
            let s = Float(ratio.squareRoot())
            for i in y.indices { y[i] /= s }
        }
        return y
    }
}
