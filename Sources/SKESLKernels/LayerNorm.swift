// Layer normalisation over the last dimension, with saved mean and 1/std for backward;
// and BERT's residual block fused around it: LN(residual + Dropout(sublayer)) in one pass
// over each row, forward and backward.
public enum LayerNorm {
    /// Mean and 1/std of one row.
    @inline(__always)
    static func rowStats(_ xr: CFPtr, _ dim: Int, _ eps: Float) -> (mean: Float, rstd: Float) {
        let inv = 1 / Float(dim)
        var s: Float = 0
        for i in 0..<dim { s += xr[i] }
        let m = s * inv
        var v: Float = 0
        for i in 0..<dim { let d = xr[i] - m; v += d * d }
        return (m, 1 / (v * inv + eps).squareRoot())
    }

    @inline(__always)
    static func normalizeRow(_ yr: FPtr, _ xr: CFPtr, _ m: Float, _ rs: Float, _ gamma: CFPtr, _ beta: CFPtr, _ dim: Int) {
        for i in 0..<dim { yr[i] = (xr[i] - m) * rs * gamma[i] + beta[i] }
    }

    /// y = (x - mean) / sqrt(var + eps) * gamma + beta, per row of `dim` values.
    public static func forward(_ y: FPtr, mean: FPtr?, rstd: FPtr?, _ x: CFPtr,
                               gamma: CFPtr, beta: CFPtr, rows: Int, dim: Int, eps: Float) {
        WorkerTeam.shared.forEachChunk(rows, itemSize: dim) { rows, _ in
            for r in rows {
                let xr = x + r * dim
                let (m, rs) = rowStats(xr, dim, eps)
                normalizeRow(y + r * dim, xr, m, rs, gamma, beta, dim)
                mean?[r] = m
                rstd?[r] = rs
            }
        }
    }

    /// y = LN(residual + Dropout(sublayer)), row by row while the row is in L1: the sum (the
    /// input backward needs) is written to `sum`; `mask` (nil: no dropout) keeps an element
    /// scaled by 1/(1-p). One pass instead of dropout, add and LayerNorm each over memory.
    public static func residualForward(_ y: FPtr, sum: FPtr, mean: FPtr?, rstd: FPtr?, sublayer: CFPtr,
                                       mask: UnsafePointer<UInt8>?, p: Float, residual: CFPtr,
                                       gamma: CFPtr, beta: CFPtr, rows: Int, dim: Int, eps: Float) {
        let scale = 1 / (1 - p)
        WorkerTeam.shared.forEachChunk(rows, itemSize: dim) { rows, _ in
            for r in rows {
                let sr = sum + r * dim, ar = sublayer + r * dim, br = residual + r * dim
                if let mk = mask {
                    let mr = mk + r * dim
                    for i in 0..<dim { sr[i] = (mr[i] != 0 ? ar[i] * scale : 0) + br[i] }
                } else {
                    for i in 0..<dim { sr[i] = ar[i] + br[i] }
                }
                let (m, rs) = rowStats(sr, dim, eps)
                normalizeRow(y + r * dim, sr, m, rs, gamma, beta, dim)
                mean?[r] = m
                rstd?[r] = rs
            }
        }
    }

    /// Per row: the two sums of the input gradient, (1/dim) Σ dy·γ and (1/dim) Σ dy·γ·x̂;
    /// dgamma and dbeta accumulate on the way (nil when frozen).
    @inline(__always)
    static func rowBackward(_ dyr: CFPtr, _ xr: CFPtr, _ m: Float, _ rs: Float, _ gamma: CFPtr,
                            _ dgamma: FPtr?, _ dbeta: FPtr?, _ dim: Int) -> (sumD: Float, sumDX: Float) {
        var sumD: Float = 0, sumDX: Float = 0
        for i in 0..<dim {
            let xh = (xr[i] - m) * rs
            let dxh = dyr[i] * gamma[i]
            sumD += dxh
            sumDX += dxh * xh
        }
        if let dg = dgamma, let dbt = dbeta {
            for i in 0..<dim {
                let xh = (xr[i] - m) * rs
                dg[i] += dyr[i] * xh
                dbt[i] += dyr[i]
            }
        }
        let inv = 1 / Float(dim)
        return (sumD * inv, sumDX * inv)
    }

    /// dgamma, dbeta += Σ over rows, column by column (the columns on the worker team): the
    /// additions of `rowBackward`, in the same row order, so the same bits.
    static func parameterGradients(dgamma dg: FPtr, dbeta dbt: FPtr, dy: CFPtr, x: CFPtr, mean: CFPtr, rstd: CFPtr,
                                   rows: Int, dim: Int) {
        WorkerTeam.shared.forEachChunk(dim, itemSize: rows) { cols, _ in
            for r in 0..<rows {
                let xr = x + r * dim, dyr = dy + r * dim, m = mean[r], rs = rstd[r]
                for i in cols {
                    let xh = (xr[i] - m) * rs
                    dg[i] += dyr[i] * xh
                    dbt[i] += dyr[i]
                }
            }
        }
    }

    /// A backward over rows. On the worker team with more than one thread, dgamma and dbeta
    /// first (by columns), then `rowsBody` split by rows without them; on one thread,
    /// `rowsBody` over every row with them (one pass over memory).
    private static func overRows(dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, x: CFPtr, mean: CFPtr, rstd: CFPtr,
                                 rows: Int, dim: Int, _ rowsBody: (Range<Int>, FPtr?, FPtr?) -> Void) {
        if WorkerTeam.shared.threads > 1 {
            if let dg = dgamma, let dbt = dbeta {
                parameterGradients(dgamma: dg, dbeta: dbt, dy: dy, x: x, mean: mean, rstd: rstd, rows: rows, dim: dim)
            }
            WorkerTeam.shared.forEachChunk(rows, itemSize: dim) { rs, _ in rowsBody(rs, nil, nil) }
        } else {
            rowsBody(0..<rows, dgamma, dbeta)
        }
    }

    /// dx (= or +=) from dy; dgamma, dbeta accumulate (nil when frozen).
    public static func backward(dx: FPtr?, dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, x: CFPtr,
                                mean: CFPtr, rstd: CFPtr, gamma: CFPtr, rows: Int, dim: Int,
                                accumulate: Bool = false) {
        overRows(dgamma: dgamma, dbeta: dbeta, dy: dy, x: x, mean: mean, rstd: rstd, rows: rows, dim: dim) { rs, dg, dbt in
            rowsBackward(rs, dx: dx, dgamma: dg, dbeta: dbt, dy: dy, x: x, mean: mean, rstd: rstd, gamma: gamma,
                         dim: dim, accumulate: accumulate)
        }
    }

    private static func rowsBackward(_ rows: Range<Int>, dx: FPtr?, dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, x: CFPtr,
                                     mean: CFPtr, rstd: CFPtr, gamma: CFPtr, dim: Int, accumulate: Bool) {
        for r in rows {
            let xr = x + r * dim, dyr = dy + r * dim
            let m = mean[r], rs = rstd[r]
            let (sumD, sumDX) = rowBackward(dyr, xr, m, rs, gamma, dgamma, dbeta, dim)
            guard let dx = dx else { continue }
            let dxr = dx + r * dim
            if accumulate {
                for i in 0..<dim { dxr[i] += rs * (dyr[i] * gamma[i] - sumD - (xr[i] - m) * rs * sumDX) }
            } else {
                for i in 0..<dim { dxr[i] = rs * (dyr[i] * gamma[i] - sumD - (xr[i] - m) * rs * sumDX) }
            }
        }
    }

    /// Backward of y = LN(residual + Dropout(sublayer)) (`sum` is residualForward's): the
    /// gradient of the sum goes to `dResidual` and, through the dropout mask, to
    /// `dSublayer`, in the same pass; dgamma and dbeta accumulate.
    public static func residualBackward(dResidual: FPtr, dSublayer: FPtr, mask: UnsafePointer<UInt8>?, p: Float,
                                        dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, sum x: CFPtr,
                                        mean: CFPtr, rstd: CFPtr, gamma: CFPtr, rows: Int, dim: Int) {
        overRows(dgamma: dgamma, dbeta: dbeta, dy: dy, x: x, mean: mean, rstd: rstd, rows: rows, dim: dim) { rs, dg, dbt in
            residualRowsBackward(rs, dResidual: dResidual, dSublayer: dSublayer, mask: mask, p: p, dgamma: dg, dbeta: dbt,
                                 dy: dy, sum: x, mean: mean, rstd: rstd, gamma: gamma, dim: dim)
        }
    }

    private static func residualRowsBackward(_ rows: Range<Int>, dResidual: FPtr, dSublayer: FPtr, mask: UnsafePointer<UInt8>?,
                                             p: Float, dgamma: FPtr?, dbeta: FPtr?, dy: CFPtr, sum x: CFPtr,
                                             mean: CFPtr, rstd: CFPtr, gamma: CFPtr, dim: Int) {
        let scale = 1 / (1 - p)
        for r in rows {
            let xr = x + r * dim, dyr = dy + r * dim
            let m = mean[r], rs = rstd[r]
            let (sumD, sumDX) = rowBackward(dyr, xr, m, rs, gamma, dgamma, dbeta, dim)
            let dr = dResidual + r * dim, ds = dSublayer + r * dim
            if let mk = mask {
                let mr = mk + r * dim
                for i in 0..<dim {
                    let v = rs * (dyr[i] * gamma[i] - sumD - (xr[i] - m) * rs * sumDX)
                    dr[i] = v
                    ds[i] = mr[i] != 0 ? v * scale : 0
                }
            } else {
                for i in 0..<dim {
                    let v = rs * (dyr[i] * gamma[i] - sumD - (xr[i] - m) * rs * sumDX)
                    dr[i] = v
                    ds[i] = v
                }
            }
        }
    }
}
