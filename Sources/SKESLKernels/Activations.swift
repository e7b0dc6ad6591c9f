// Element-wise activations with their backward passes.
#if canImport(Glibc)
import Glibc
#endif

public enum GELU {
    /// BERT's exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
    public static func forward(_ y: FPtr, _ x: CFPtr, count n: Int) {
        let s: Float = 0.70710678118654752
        for i in 0..<n { let v = x[i]; y[i] = 0.5 * v * (1 + erff(v * s)) }
    }
    /// y = x + bias (per row of `dim`), then GELU in place; keeps the pre-activation in `pre`.
    public static func biasForward(_ y: FPtr, pre: FPtr, bias: CFPtr, rows: Int, dim: Int) {
        let s: Float = 0.70710678118654752
        for r in 0..<rows {
            let p = pre + r * dim, o = y + r * dim
            for j in 0..<dim { let v = p[j] + bias[j]; p[j] = v; o[j] = 0.5 * v * (1 + erff(v * s)) }
        }
    }
    /// dx = dy * GELU'(x).
    public static func backward(_ dx: FPtr, dy: CFPtr, x: CFPtr, count n: Int) {
        let s: Float = 0.70710678118654752
        let c: Float = 0.39894228040143268  // 1/sqrt(2π)
        for i in 0..<n {
            let v = x[i]
            let cdf = 0.5 * (1 + erff(v * s))
            let pdf = c * expf(-0.5 * v * v)
            dx[i] = dy[i] * (cdf + v * pdf)
        }
    }
}

public enum ReLU {
    /// max(x, 0); NaN stays NaN (as torch.relu), so a broken sample shows in the loss.
    public static func forward(_ y: FPtr, _ x: CFPtr, count n: Int) {
        for i in 0..<n { y[i] = x[i] < 0 ? 0 : x[i] }
    }
    /// dx = dy where x > 0 (PyTorch: gradient 0 at 0).
    public static func backward(_ dx: FPtr, dy: CFPtr, x: CFPtr, count n: Int) {
        for i in 0..<n { dx[i] = x[i] > 0 ? dy[i] : 0 }
    }
}

public enum Elementwise {
    /// y = a + b
    public static func add(_ y: FPtr, _ a: CFPtr, _ b: CFPtr, count n: Int) {
        for i in 0..<n { y[i] = a[i] + b[i] }
    }
    /// y += a
    public static func accumulate(_ y: FPtr, _ a: CFPtr, count n: Int) {
        for i in 0..<n { y[i] += a[i] }
    }
    public static func scale(_ y: FPtr, _ s: Float, count n: Int) {
        for i in 0..<n { y[i] *= s }
    }
    public static func zero(_ y: FPtr, count n: Int) { y.update(repeating: 0, count: n) }
}
