// MFCC as librosa 0.9.1's `mfcc(y, sr, hop_length=512, htk=True)` computes it:
// power spectrogram |STFT|^2 (n_fft 2048, periodic Hann, centred, zero padding), 128 mel
// filters on the HTK mel scale from 0 Hz to sr/2 with Slaney area normalisation,
// power_to_db(ref=1, amin=1e-10, top_db=80) in float32, DCT-II with orthonormal scaling,
// the first 20 coefficients, no liftering. See docs/feature-store.md for each default.
import Foundation

/// librosa's `filters.mel(sr, n_fft, n_mels, htk=True, norm="slaney")` as float32
/// [mel][bin], with numpy's order of operations (weights rounded to float32, then scaled).
public func melFilterBank(sr: Double, nFFT: Int, nMels: Int = 128, htk: Bool = true) -> [Float] {
    precondition(htk, "only the HTK mel scale is implemented (the reference's htk=True)")
    let bins = nFFT / 2 + 1
    let val = 1.0 / (Double(nFFT) * (1.0 / sr))
    let fftFreqs = (0..<bins).map { Double($0) * val }
    let fmax = sr / 2
    let maxMel = 2595.0 * log10(1.0 + fmax / 700.0)
    let count = nMels + 2
    let step = (maxMel - 0.0) / Double(count - 1)
    let mels = (0..<count).map { $0 == count - 1 ? maxMel : Double($0) * step + 0.0 }
    let melF = mels.map { 700.0 * (pow(10.0, $0 / 2595.0) - 1.0) }
    var w = [Float](repeating: 0, count: nMels * bins)
    for i in 0..<nMels {
        let fd0 = melF[i + 1] - melF[i], fd1 = melF[i + 2] - melF[i + 1]
        let enorm = 2.0 / (melF[i + 2] - melF[i])
        for f in 0..<bins {
            let lower = -(melF[i] - fftFreqs[f]) / fd0
            let upper = (melF[i + 2] - fftFreqs[f]) / fd1
            let v = Float(max(0, min(lower, upper)))
            w[i * bins + f] = Float(Double(v) * enorm)
        }
    }
    return w
}

/// The DCT-II matrix with scipy's "ortho" norm, first `n` rows of an N-point transform.
func orthoDCT2(rows n: Int, size N: Int) -> [Double] {
    var m = [Double](repeating: 0, count: n * N)
    for k in 0..<n {
        let s = k == 0 ? (1.0 / (4.0 * Double(N))).squareRoot() : (1.0 / (2.0 * Double(N))).squareRoot()
        for j in 0..<N { m[k * N + j] = 2 * s * cos(Double.pi * Double(k) * Double(2 * j + 1) / Double(2 * N)) }
    }
    return m
}

final class MFCC {
    let nMels = 128, nMFCC = 20
    let bins: Int
    let filters: [Float]
    /// Per mel band, the first and last bin with a nonzero weight (the filters are sparse).
    let ranges: [(Int, Int)]
    let dct: [Double]

    init(sr: Double, nFFT: Int) {
        bins = nFFT / 2 + 1
        filters = melFilterBank(sr: sr, nFFT: nFFT, nMels: nMels)
        var r: [(Int, Int)] = []
        for m in 0..<nMels {
            let row = filters[(m * bins)..<((m + 1) * bins)]
            if let a = row.firstIndex(where: { $0 != 0 }), let b = row.lastIndex(where: { $0 != 0 }) {
                r.append((a - m * bins, b - m * bins))
            } else { r.append((0, -1)) }
        }
        ranges = r
        dct = orthoDCT2(rows: nMFCC, size: nMels)
    }

    /// MFCCs [frame][20] from the spectrogram (n_fft 2048, hop 512).
    func callAsFunction(_ s: Spectrogram) -> [Float] {
        let T = s.frames
        // Power spectrum in float32: |z| by hypotf, then squared (numpy's abs(D)**2).
        var power = [Float](repeating: 0, count: bins)
        var db = [Float](repeating: 0, count: T * nMels)
        for t in 0..<T {
            for f in 0..<bins { let a = s.magnitude(t, f); power[f] = a * a }
            for m in 0..<nMels {
                let (a, b) = ranges[m]
                var acc = 0.0
                if b >= a { for f in a...b { acc += Double(filters[m * bins + f]) * Double(power[f]) } }
                // 10 * log10(max(amin, S)) in float32 (ref = 1 subtracts 0).
                db[t * nMels + m] = Float(10.0) * log10f(max(Float(1e-10), Float(acc)))
            }
        }
        // top_db = 80 below the clip's maximum.
        if let mx = db.max() {
            let floor = mx - Float(80.0)
            for i in db.indices where db[i] < floor { db[i] = floor }
        }
        var out = [Float](repeating: 0, count: T * nMFCC)
        for t in 0..<T {
            for k in 0..<nMFCC {
                var acc = 0.0
                for j in 0..<nMels { acc += dct[k * nMels + j] * Double(db[t * nMels + j]) }
                out[t * nMFCC + k] = Float(acc)
            }
        }
        return out
    }
}

/// librosa 0.9.1's `zero_crossing_rate(y, frame_length=2048, hop_length=512, center=True)`:
/// edge padding by 1024, |y| <= 1e-10 (float32) counts as +0, a crossing is a change of the
/// sign bit between neighbours inside the frame, rate = crossings / 2048.
func zeroCrossingRate(_ y: UnsafeBufferPointer<Float>, frameLength: Int = 2048, hop: Int = 512) -> [Float] {
    let n = y.count, half = frameLength / 2
    let frames = 1 + n / hop
    let threshold = Float(1e-10)
    // Sign bits of the edge-padded signal.
    var sign = [Bool](repeating: false, count: n + 2 * half)
    for i in 0..<(n + 2 * half) {
        let v = y[min(max(i - half, 0), n - 1)]
        sign[i] = abs(v) <= threshold ? false : v.sign == .minus
    }
    var out = [Float](repeating: 0, count: frames)
    for t in 0..<frames {
        var c = 0
        let s = t * hop
        for i in (s + 1)..<(s + frameLength) where sign[i] != sign[i - 1] { c += 1 }
        out[t] = Float(Double(c) / Double(frameLength))
    }
    return out
}
