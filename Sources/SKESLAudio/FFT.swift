// Double-precision FFTs through FFTW3. librosa (numpy.fft / pocketfft) transforms in
// double and rounds the spectrum to complex64 afterwards; we do the same, so the only
// difference is the FFT's own rounding (~1e-16 relative).
// Plans are made once per size with FFTW_ESTIMATE (no timing, hence deterministic) and
// kept per thread's extractor; FFTW's planner is not thread-safe, so plan creation is
// serialised by a lock shared by every extractor of the process.
import CFFTW
import Foundation

let fftwPlannerLock = NSLock()

/// Real-to-complex transform of size n (n/2+1 outputs).
final class RealFFT {
    let n: Int
    let input: UnsafeMutablePointer<Double>
    let output: UnsafeMutablePointer<fftw_complex>
    let plan: fftw_plan

    init(_ n: Int) {
        self.n = n
        input = fftw_alloc_real(n)!
        output = fftw_alloc_complex(n / 2 + 1)!
        fftwPlannerLock.lock()
        plan = fftw_plan_dft_r2c_1d(Int32(n), input, output, UInt32(FFTW_ESTIMATE))!
        fftwPlannerLock.unlock()
    }

    deinit {
        fftwPlannerLock.lock()
        fftw_destroy_plan(plan)
        fftwPlannerLock.unlock()
        fftw_free(input); fftw_free(output)
    }

    /// Transforms `input` (filled by the caller) into `output`.
    func execute() { fftw_execute(plan) }

    /// Output bin k as (re, im).
    @inline(__always) func bin(_ k: Int) -> (Double, Double) {
        let p = UnsafeMutableRawPointer(output).assumingMemoryBound(to: Double.self)
        return (p[2 * k], p[2 * k + 1])
    }
}

/// Complex forward transform of size n.
final class ComplexFFT {
    let n: Int
    let buffer: UnsafeMutablePointer<fftw_complex>
    let plan: fftw_plan

    init(_ n: Int) {
        self.n = n
        buffer = fftw_alloc_complex(n)!
        fftwPlannerLock.lock()
        plan = fftw_plan_dft_1d(Int32(n), buffer, buffer, FFTW_FORWARD, UInt32(FFTW_ESTIMATE))!
        fftwPlannerLock.unlock()
    }

    deinit {
        fftwPlannerLock.lock()
        fftw_destroy_plan(plan)
        fftwPlannerLock.unlock()
        fftw_free(buffer)
    }

    /// Interleaved (re, im) view of the in-place buffer.
    var values: UnsafeMutablePointer<Double> { UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: Double.self) }

    func execute() { fftw_execute(plan) }
}
