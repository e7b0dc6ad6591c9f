// Layer normalisation over the last dimension, with saved mean and 1/std for backward.
public enum LayerNorm {
    /// y = (x - mean) / sqrt(var + eps) * gamma + beta, per row of `dim` values.
    public static func forward(_ y: FPtr, mean: FPtr?, rstd: FPtr?, _ x: CFPtr,
                               gamma: CFPtr, beta: CFPtr, rows: Int, dim: Int, eps: Float) {
        let inv = 1 / Float(dim)
        for r in 0..<rows {
            let xr = x + r * dim, yr = y + r * dim
            var s: Float = 0
            for i in 0..<dim { s += xr[i] }
            let m = s * inv
            var v: Float = 0
            for i in 0..<dim { let d = xr[i] - m; v += d * d }
            let rs = 1 / (v * inv + eps).squareRoot()
            for i in 0..<dim { yr[i] = (xr[i] - m) * rs * gamma[i] + beta[i] }
            mean?[r] = m
            rstd?[r] = rs
        }
    }

    /// dx (= or +=) from dy; dgamma, dbeta accumulate (nil when frozen).
    public static func backward(dx: FPtr?, dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, x: CFPtr,
                                mean: CFPtr, rstd: CFPtr, gamma: CFPtr, rows: Int, dim: Int,
                                accumulate: Bool = false) {
        let inv = 1 / Float(dim)
        for r in 0..<rows {
            let xr = x + r * dim, dyr = dy + r * dim
            let m = mean[r], rs = rstd[r]
            var sumD: Float = 0, sumDX: Float = 0
            for i in 0..<dim {
                let xh = (xr[i] - m) * rs
                let dxh = dyr[i] * gamma[i]
                sumD += dxh
                sumDX += dxh * xh
            }
            sumD *= inv; sumDX *= inv
            if let dg = dgamma, let dbt = dbeta {
                for i in 0..<dim {
                    let xh = (xr[i] - m) * rs
                    dg[i] += dyr[i] * xh
                    dbt[i] += dyr[i]
                }
            }
            if let dx = dx {
                let dxr = dx + r * dim
                if accumulate {
                    for i in 0..<dim {
                        let xh = (xr[i] - m) * rs
                        dxr[i] += rs * (dyr[i] * gamma[i] - sumD - xh * sumDX)
                    }
                } else {
                    for i in 0..<dim {
                        let xh = (xr[i] - m) * rs
                        dxr[i] = rs * (dyr[i] * gamma[i] - sumD - xh * sumDX)
                    }
                }
            }
        }
    }
}
