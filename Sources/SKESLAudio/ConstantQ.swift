// Chromagram from a constant-Q transform as librosa 0.9.1's `chroma_cqt(y, sr,
// hop_length=512)`: cqt(fmin=C1 retuned by the estimated tuning, 7 octaves x 36 bins,
// Hann-windowed wavelets with L1 norm, FFT basis sparsified at the 1% quantile,
// recursive octave-by-octave downsampling by resampy kaiser_fast with sqrt(2) scaling,
// responses divided by sqrt(filter length)), |.|, folded to 12 pitch classes (36 bins to
// 12 with the centre bin on the semitone), each frame divided by its maximum.
import Foundation

/// One octave's sparse FFT basis: for each filter, its nonzero bins and values.
struct OctaveBasis {
    var nFFT: Int
    var rows: [(bins: [Int32], re: [Float], im: [Float])]
}

final class ConstantQ {
    let binsPerOctave = 36, octaves = 7
    var nBins: Int { binsPerOctave * octaves }
    let fminC1 = 440.0 * pow(2.0, (24.0 - 69.0) / 12.0)
    let windowBandwidthHann = 1.50018310546875   // librosa's table: n*sum(w^2)/sum(|w|)^2 at n=1000
    private var bases: [String: OctaveBasis] = [:]
    private var stfts: [Int: STFT] = [:]
    private var complexFFTs: [Int: ComplexFFT] = [:]
    private let fast = ResampleFilter.kaiserFast
    private var halvers: [String: Resampler] = [:]

    /// librosa's wavelet_lengths: per-frequency Q from the local bins per octave.
    func lengths(_ freqs: [Double], sr: Double) -> (lengths: [Double], cutoff: Double) {
        let n = freqs.count
        let logf = freqs.map { log2($0) }
        var bpo = [Double](repeating: 0, count: n)
        bpo[0] = 1 / (logf[1] - logf[0])
        bpo[n - 1] = 1 / (logf[n - 1] - logf[n - 2])
        if n > 2 { for i in 1..<(n - 1) { bpo[i] = 2 / (logf[i + 1] - logf[i - 1]) } }
        var cutoff = -Double.infinity
        var lens = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let p = pow(2.0, 2 / bpo[i])
            let alpha = (p - 1) / (p + 1)
            let Q = 1.0 / alpha
            cutoff = max(cutoff, freqs[i] * (1 + 0.5 * windowBandwidthHann / Q) + 0.5 * 0)
            lens[i] = Q * sr / (freqs[i] + 0 / alpha)
        }
        return (lens, cutoff)
    }

    private func complexFFT(_ n: Int) -> ComplexFFT {
        if let f = complexFFTs[n] { return f }
        let f = ComplexFFT(n); complexFFTs[n] = f; return f
    }

    /// librosa's __vqt_filter_fft for one octave's frequencies at sample rate `sr`.
    func basis(_ freqs: [Double], sr: Double) -> OctaveBasis {
        let key = "\(sr)|\(freqs.first!.bitPattern)"
        if let b = bases[key] { return b }
        let (lens, _) = lengths(freqs, sr: sr)
        let maxLen = lens.max()!
        let nFFT = Int(pow(2.0, log2(maxLen).rounded(.up)))
        let fft = complexFFT(nFFT)
        let v = fft.values
        var rows: [(bins: [Int32], re: [Float], im: [Float])] = []
        let half = nFFT / 2 + 1
        var mags = [Double](repeating: 0, count: half)
        for (ilen, freq) in zip(lens, freqs) {
            // sig = exp(1j * 2pi * freq / sr * arange(-ilen//2, ilen//2)) * hann(len), L1-normalised.
            let start = (-ilen / 2).rounded(.down), stop = (ilen / 2).rounded(.down)
            let count = Int((stop - start).rounded(.up))
            let win = periodicHann(count)
            var re = [Double](repeating: 0, count: count), im = [Double](repeating: 0, count: count)
            var l1 = 0.0
            let invSr = 1.0 / sr
            for k in 0..<count {
                let a = start + Double(k)
                let phase = ((a * 2) * Double.pi * freq) * invSr
                re[k] = cos(phase) * win[k]; im[k] = sin(phase) * win[k]
                l1 += (re[k] * re[k] + im[k] * im[k]).squareRoot()
            }
            // Centred in nFFT, rounded to complex64, scaled by ilen / nFFT (in double, rounded again).
            for i in 0..<(2 * nFFT) { v[i] = 0 }
            let lpad = (nFFT - count) / 2
            let s = ilen / Double(nFFT)
            for k in 0..<count {
                let r = Double(Float(re[k] * (1 / l1))), m = Double(Float(im[k] * (1 / l1)))
                v[2 * (lpad + k)] = Double(Float(r * s)); v[2 * (lpad + k) + 1] = Double(Float(m * s))
            }
            fft.execute()
            // Sparsify: drop the smallest coefficients that together hold 1% of the row's L1 mass.
            var norm = 0.0
            for k in 0..<half { mags[k] = (v[2 * k] * v[2 * k] + v[2 * k + 1] * v[2 * k + 1]).squareRoot(); norm += mags[k] }
            let sorted = mags.sorted()
            var cum = 0.0, j = 0
            for (i, m) in sorted.enumerated() { cum += m / norm; if !(cum < 0.01) { j = i; break } }
            let th = sorted[j]
            var b: [Int32] = [], rr: [Float] = [], ii: [Float] = []
            for k in 0..<half where mags[k] >= th { b.append(Int32(k)); rr.append(Float(v[2 * k])); ii.append(Float(v[2 * k + 1])) }
            rows.append((b, rr, ii))
        }
        let out = OctaveBasis(nFFT: nFFT, rows: rows)
        bases[key] = out
        return out
    }

    private func stft(_ n: Int) -> STFT {
        if let s = stfts[n] { return s }
        let s = STFT(nFFT: n, window: nil); stfts[n] = s; return s
    }

    private func resampler(from: Double, to: Double) -> Resampler {
        let key = "\(from)>\(to)"
        if let r = halvers[key] { return r }
        let r = Resampler(from: from, to: to, filter: fast); halvers[key] = r; return r
    }

    /// |CQT| [frame][252] (float32, after dividing by sqrt(length)), for a tuning in bins.
    func magnitude(_ y: [Float], sr srIn: Double, hop hopIn: Int, tuning: Double) throws -> (values: [Float], frames: Int) {
        let fmin = fminC1 * pow(2.0, tuning / Double(binsPerOctave))
        let freqs = (0..<nBins).map { 1.0 * fmin * pow(2.0, Double($0) / Double(binsPerOctave)) }
        let nyquist = srIn / 2
        let (_, cutoff) = lengths(freqs, sr: srIn)
        guard cutoff <= nyquist else { throw FeatureError.unsupported("a constant-Q top frequency of \(cutoff) Hz exceeds the Nyquist frequency \(nyquist) Hz") }
        // Auto resampling: kaiser_fast everywhere when the filters stay below 0.85 * Nyquist.
        var y = y, sr = srIn, hop = hopIn
        let useFast = cutoff < ResampleFilter.bwFastest * nyquist
        precondition(useFast, "the reference's settings keep the constant-Q filters below 0.85 x Nyquist")
        // Early downsampling while the filters and the hop allow.
        let count1 = max(0, Int(log2(ResampleFilter.bwFastest * nyquist / cutoff).rounded(.up)) - 1 - 1)
        var twos = 0, h = hop
        while h > 0 && h % 2 == 0 { twos += 1; h /= 2 }
        let count2 = max(0, twos - octaves + 1)
        let down = min(count1, count2)
        if down > 0 {
            let factor = 1 << down
            hop /= factor
            guard y.count >= factor else { throw FeatureError.tooShort("\(y.count) samples are too few for a \(octaves)-octave constant-Q transform") }
            let newSr = sr / Double(factor)
            y = try resampler(from: sr, to: newSr).librosa(y, scale: true)
            sr = newSr
        }
        var responses: [(values: [Double], rows: Int, frames: Int)] = []
        var myY = y, mySr = sr, myHop = hop
        for i in 0..<octaves {
            let lo = nBins - binsPerOctave * (i + 1), hi = nBins - binsPerOctave * i
            let basis = basis(Array(freqs[lo..<hi]), sr: mySr)
            let scale = Float((sr / mySr).squareRoot())
            let spec = myY.withUnsafeBufferPointer { stft(basis.nFFT)($0, hop: myHop) }
            let T = spec.frames, nb = spec.bins
            var out = [Double](repeating: 0, count: basis.rows.count * T * 2)
            spec.values.withUnsafeBufferPointer { d in
                for (r, row) in basis.rows.enumerated() {
                    for t in 0..<T {
                        var sr_ = 0.0, si = 0.0
                        let base = t * nb * 2
                        for q in 0..<row.bins.count {
                            let k = Int(row.bins[q])
                            let br = Double(row.re[q] * scale), bi = Double(row.im[q] * scale)
                            let xr = Double(d[base + 2 * k]), xi = Double(d[base + 2 * k + 1])
                            sr_ += br * xr - bi * xi; si += br * xi + bi * xr
                        }
                        out[2 * (r * T + t)] = sr_; out[2 * (r * T + t) + 1] = si
                    }
                }
            }
            responses.append((out, basis.rows.count, T))
            // librosa also halves after the last octave (unused); a signal too short for that
            // fails there, so it fails here too.
            if i == octaves - 1 && myHop % 2 == 0 && myY.count < 2 {
                throw FeatureError.tooShort("\(myY.count) sample after \(octaves) octaves is too few for librosa's last halving")
            }
            if i < octaves - 1 && myHop % 2 == 0 {
                myHop /= 2
                let newSr = mySr / 2
                do { myY = try resampler(from: 2, to: 1).librosa(myY, scale: true) } catch {
                    throw FeatureError.tooShort("\(myY.count) samples at octave \(i + 1) are too few to halve again for the constant-Q transform")
                }
                mySr = newSr
            }
        }
        let frames = responses.map { $0.frames }.min()!
        let (lens, _) = lengths(freqs, sr: sr)
        var C = [Float](repeating: 0, count: frames * nBins)
        var end = nBins
        for resp in responses {
            let rows = resp.rows
            for r in 0..<rows {
                let bin = end - rows + r
                let inv = 1.0 / lens[bin].squareRoot()   // numpy divides complex by real as x * (1/d)
                for t in 0..<frames {
                    let re = Float(resp.values[2 * (r * resp.frames + t)]), im = Float(resp.values[2 * (r * resp.frames + t) + 1])
                    let a = Float(Double(re) * inv), b = Float(Double(im) * inv)
                    C[t * nBins + bin] = hypotf(a, b)
                }
            }
            end -= rows
        }
        return (C, frames)
    }

    /// Chroma [frame][12] from |CQT| [frame][252]: bin b of an octave goes to pitch class
    /// ((b + 1) mod 36) / 3 (librosa's cq_to_chroma rolls by -1 so that each semitone's centre
    /// bin lands on it), then each frame is divided by its maximum (frames of all zeros stay 0).
    func chroma(_ C: [Float], frames: Int) -> [Float] {
        var out = [Float](repeating: 0, count: frames * 12)
        var acc = [Double](repeating: 0, count: 12)
        for t in 0..<frames {
            for c in 0..<12 { acc[c] = 0 }
            for b in 0..<nBins {
                let c = ((b % binsPerOctave + 1) % binsPerOctave) / 3
                acc[c] += Double(C[t * nBins + b])
            }
            var mx = 0.0
            for c in 0..<12 { acc[c] = Double(Float(acc[c])); mx = max(mx, acc[c]) }
            if mx < Double(Float.leastNormalMagnitude) { mx = 1 }
            for c in 0..<12 { out[t * 12 + c] = Float(acc[c] / mx) }
        }
        return out
    }
}
