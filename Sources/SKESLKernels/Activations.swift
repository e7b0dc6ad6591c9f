// Element-wise activations with their backward passes.
#if canImport(Glibc)
import Glibc
#endif

public enum GELU {
    static let invSqrt2: Float = 0.70710678118654752
    static let invSqrt2Pi: Float = 0.39894228040143268

    @inline(__always) static func f8(_ v: F8) -> F8 { 0.5 * v * (1 + erf8(v * invSqrt2)) }
    @inline(__always) static func d8(_ v: F8) -> F8 {
        0.5 * (1 + erf8(v * invSqrt2)) + v * (invSqrt2Pi * exp8(-0.5 * v * v))
    }

    /// BERT's exact GELU: 0.5 x (1 + erf(x / sqrt 2)), erf vectorised (FastMath).
    public static func forward(_ y: FPtr, _ x: CFPtr, count n: Int) {
        FastMath.map(y, x, n, f8)
    }
    /// pre = pre + bias (per row of `dim`), y = GELU(pre): one pass, the pre-activation
    /// kept for backward.
    public static func biasForward(_ y: FPtr, pre: FPtr, bias: CFPtr, rows: Int, dim: Int) {
        for r in 0..<rows {
            let p = pre + r * dim, o = y + r * dim
            var j = 0
            while j + 8 <= dim {
                let v = load8(p + j) + load8(bias + j)
                store8(v, p + j)
                store8(f8(v), o + j)
                j += 8
            }
            while j < dim { p[j] += bias[j]; j += 1 }
            if dim % 8 != 0 { let t = dim - dim % 8; FastMath.map(o + t, p + t, dim - t, f8) }
        }
    }
    /// dx = dy * GELU'(x)   (dx may alias dy)
    public static func backward(_ dx: FPtr, dy: CFPtr, x: CFPtr, count n: Int) {
        var i = 0
        while i + 8 <= n { store8(load8(dy + i) * d8(load8(x + i)), dx + i); i += 8 }
        while i < n {
            var v = F8(repeating: 0); v[0] = x[i]
            dx[i] = dy[i] * d8(v)[0]
            i += 1
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
