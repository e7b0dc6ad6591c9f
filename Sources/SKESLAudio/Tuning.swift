// Tuning estimation as librosa 0.9.1's `estimate_tuning(y, sr, bins_per_octave=36)`:
// `piptrack` (n_fft 2048, hop 512, |STFT|, 150-4000 Hz, peaks above 0.1 x the frame's
// maximum, parabolic interpolation), magnitudes at or above their median, then a
// histogram of the pitches' deviation from the 36-per-octave grid in 0.01-bin steps;
// the tuning is the left edge of the fullest bin.
//
// The histogram makes this step discontinuous, so it follows numpy's float32 arithmetic
// operation by operation (piptrack works on float32 magnitudes; the pitches are rounded
// to float32; the deviation is computed in float32).
import Foundation

func estimateTuning(_ s: Spectrogram, sr: Double, nFFT: Int, binsPerOctave: Int) -> Double {
    let bins = s.bins, T = s.frames
    let val = 1.0 / (Double(nFFT) * (1.0 / sr))
    let fmin = 150.0, fmax = min(4000.0, sr / 2)
    var lo = bins, hi = -1
    for f in 0..<bins { let fr = Double(f) * val; if fmin <= fr && fr < fmax { lo = min(lo, f); hi = max(hi, f) } }
    var pitches: [Float] = [], mags: [Float] = []
    var S = [Float](repeating: 0, count: bins)
    var x = [Float](repeating: 0, count: bins)
    let tiny = Float.leastNormalMagnitude
    let half = Float(0.5)
    if hi >= lo {
        for t in 0..<T {
            var mx: Float = 0
            for f in 0..<bins { S[f] = s.magnitude(t, f); mx = max(mx, S[f]) }
            let ref = Float(0.1) * mx
            for f in 0..<bins { x[f] = S[f] > ref ? S[f] : 0 }
            for f in lo...hi {
                // localmax with edge padding: x[f] > x[f-1] and x[f] >= x[f+1].
                let prev = x[max(f - 1, 0)], next = x[min(f + 1, bins - 1)]
                guard x[f] > prev && x[f] >= next else { continue }
                var avg: Float = 0, shift: Float = 0
                if f >= 1 && f <= bins - 2 {
                    avg = half * (S[f + 1] - S[f - 1])
                    var sh = Float(2) * S[f] - S[f + 1] - S[f - 1]
                    sh = sh + (abs(sh) < tiny ? 1 : 0)
                    shift = avg / sh
                }
                let dskew = half * avg * shift
                let p = Float(((Double(f) + Double(shift)) * sr) / Double(nFFT))
                pitches.append(p); mags.append(S[f] + dskew)
            }
        }
    }
    // Keep pitches > 0 whose magnitude reaches the median magnitude of those pitches.
    var positive: [Float] = []
    for (p, m) in zip(pitches, mags) where p > 0 { positive.append(m) }
    guard !positive.isEmpty else { return 0 }
    positive.sort()
    let c = positive.count
    let threshold: Float = c % 2 == 1 ? positive[c / 2] : (positive[c / 2 - 1] + positive[c / 2]) / 2
    var counts = [Int](repeating: 0, count: 100)
    let edges = (0...100).map { $0 == 100 ? 0.5 : Double($0) * 0.01 + -0.5 }
    var any = false
    for (p, m) in zip(pitches, mags) where p > 0 && m >= threshold {
        // residual = mod(bpo * log2(f / 27.5), 1) in float32, folded to [-0.5, 0.5).
        var r = Float(binsPerOctave) * log2f(p / Float(440.0 / 16))
        r = fmodf(r, 1)
        if r != 0 && r < 0 { r += 1 }
        if r >= 0.5 { r -= 1 }
        let d = Double(r)
        var k = Int((d - -0.5) * (100 / (0.5 - -0.5)))
        k = min(max(k, 0), 99)
        if d < edges[k] { k -= 1 } else if k < 99 && d >= edges[k + 1] { k += 1 }
        counts[k] += 1; any = true
    }
    guard any else { return 0 }
    var best = 0
    for k in 1..<100 where counts[k] > counts[best] { best = k }
    return edges[best]
}
