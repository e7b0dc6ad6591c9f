// Short-time Fourier transform as librosa 0.9.1's `stft(y, n_fft, hop_length, window,
// center=True, pad_mode="constant")`: the signal is zero-padded by n_fft/2 on both sides,
// frame t starts at t*hop, frames = 1 + len/hop; window (float64) times samples (float32)
// in double, rfft in double, result rounded to complex64.
import Foundation

/// scipy's `get_window("hann", n, fftbins=True)`: a periodic Hann window, computed as scipy
/// does (general_cosine over linspace(-pi, pi, n+1), last point dropped).
public func periodicHann(_ n: Int) -> [Double] {
    if n == 1 { return [1] }
    let m = n + 1
    let step = (Double.pi - -Double.pi) / Double(m - 1)
    return (0..<n).map { k in 0.5 + 0.5 * cos(Double(k) * step + -Double.pi) }
}

/// A complex64 spectrogram, [frame][bin] with (re, im) interleaved.
public struct Spectrogram {
    public var frames: Int
    public var bins: Int
    public var values: [Float]

    /// numpy's abs of a complex64 value: hypotf, in float32.
    @inline(__always) public func magnitude(_ t: Int, _ f: Int) -> Float {
        let i = 2 * (t * bins + f)
        return hypotf(values[i], values[i + 1])
    }
}

final class STFT {
    let nFFT: Int
    let window: [Double]   // all ones for a boxcar ("ones"): 1.0 * x is exact
    let fft: RealFFT

    init(nFFT: Int, window: [Double]?) {
        self.nFFT = nFFT; self.window = window ?? [Double](repeating: 1, count: nFFT)
        fft = RealFFT(nFFT)
    }

    static func frameCount(samples: Int, hop: Int) -> Int { 1 + samples / hop }

    func callAsFunction(_ y: UnsafeBufferPointer<Float>, hop: Int) -> Spectrogram {
        let n = y.count, half = nFFT / 2, bins = nFFT / 2 + 1
        let frames = STFT.frameCount(samples: n, hop: hop)
        var out = [Float](repeating: 0, count: frames * bins * 2)
        let inp = fft.input
        out.withUnsafeMutableBufferPointer { o in
          window.withUnsafeBufferPointer { w in
            for t in 0..<frames {
                let start = t * hop - half   // in the unpadded signal
                if start >= 0 && start + nFFT <= n {
                    for i in 0..<nFFT { inp[i] = w[i] * Double(y[start + i]) }
                } else {
                    for i in 0..<nFFT {
                        let j = start + i
                        inp[i] = (j >= 0 && j < n) ? w[i] * Double(y[j]) : 0
                    }
                }
                fft.execute()
                let base = t * bins * 2
                for k in 0..<bins {
                    let (re, im) = fft.bin(k)
                    o[base + 2 * k] = Float(re); o[base + 2 * k + 1] = Float(im)
                }
            }
          }
        }
        return Spectrogram(frames: frames, bins: bins, values: out)
    }
}
