// Scaled dot-product attention over head slices of row-major [B, T, ld] tensors:
// head h of a token is columns h*dh ..< (h+1)*dh, so Q, K, V straight out of their
// Linear layers are used as they are (no transposing copies); one sgemm per
// (sample, head) with leading dimensions doing the striding.
#if canImport(Glibc)
import Glibc
#endif

public struct AttentionShape: Sendable {
    public var batch: Int, heads: Int, lq: Int, lk: Int, headDim: Int
    public var ldq: Int, ldk: Int, ldv: Int, ldc: Int
    public var scale: Float
    public init(batch: Int, heads: Int, lq: Int, lk: Int, headDim: Int,
                ldq: Int, ldk: Int, ldv: Int, ldc: Int, scale: Float) {
        self.batch = batch; self.heads = heads; self.lq = lq; self.lk = lk; self.headDim = headDim
        self.ldq = ldq; self.ldk = ldk; self.ldv = ldv; self.ldc = ldc; self.scale = scale
    }
    /// Elements of the probabilities tensor [B, heads, lq, lk].
    public var probsCount: Int { batch * heads * lq * lk }
}

public enum Attention {
    /// Softmax of each row of `rows x n` in place, after adding `maskAdd[j]` (may be nil).
    @inline(__always)
    public static func softmaxRows(_ s: FPtr, rows: Int, n: Int, maskAdd: CFPtr?) {
        for r in 0..<rows {
            let row = s + r * n
            if let m = maskAdd { for j in 0..<n { row[j] += m[j] } }
            var mx = -Float.infinity
            for j in 0..<n where row[j] > mx { mx = row[j] }
            var sum: Float = 0
            for j in 0..<n { let e = expf(row[j] - mx); row[j] = e; sum += e }
            let inv = 1 / sum
            for j in 0..<n { row[j] *= inv }
        }
    }

    /// Scratch floats `forward` needs with a dropout mask (`backward`: twice this): one
    /// lq×lk plane per thread of the worker team, which runs the (sample, head) pairs.
    public static func scratchCount(_ s: AttentionShape) -> Int { scratchCount(lq: s.lq, lk: s.lk) }
    public static func scratchCount(lq: Int, lk: Int) -> Int { lq * lk * WorkerTeam.shared.threads }

    /// ctx = softmax(scale · Q Kᵀ + mask) V per (sample, head). `probs` [B, H, lq, lk] keeps
    /// the softmax output for backward. With a dropout mask (same layout as probs, 0/1 bytes)
    /// the probabilities are dropped and rescaled before multiplying V; `scratch` must
    /// then hold `scratchCount(shape)` floats. The (sample, head) pairs run on the worker
    /// team, each exactly as on one thread.
    public static func forward(ctx: FPtr, probs: FPtr, q: CFPtr, k: CFPtr, v: CFPtr,
                               keyMaskAdd: CFPtr?, shape s: AttentionShape,
                               dropMask: UnsafePointer<UInt8>? = nil, dropScale: Float = 1, scratch: FPtr? = nil) {
        let dh = s.headDim, plane = s.lq * s.lk
        WorkerTeam.shared.forEachChunk(s.batch * s.heads, itemSize: plane * dh) { pairs, part in
            let scratch = scratch.map { $0 + part * plane }
            for pair in pairs {
                let b = pair / s.heads, h = pair % s.heads
                let qb = q + b * s.lq * s.ldq + h * dh
                let kb = k + b * s.lk * s.ldk + h * dh
                let vb = v + b * s.lk * s.ldv + h * dh
                let p = probs + (b * s.heads + h) * plane
                if s.lq == 1 {
                    sgemv(trans: false, rows: s.lk, cols: dh, alpha: s.scale, a: kb, lda: s.ldk, x: qb, y: p)
                } else {
                    sgemm(transA: false, transB: true, m: s.lq, n: s.lk, k: dh, alpha: s.scale,
                          a: qb, lda: s.ldq, b: kb, ldb: s.ldk, beta: 0, c: p, ldc: s.lk)
                }
                softmaxRows(p, rows: s.lq, n: s.lk, maskAdd: keyMaskAdd.map { $0 + b * s.lk })
                var used = CFPtr(p)
                if let dm = dropMask, let tmp = scratch {
                    let mb = dm + (b * s.heads + h) * plane
                    for i in 0..<plane { tmp[i] = mb[i] != 0 ? p[i] * dropScale : 0 }
                    used = CFPtr(tmp)
                }
                if s.lq == 1 {
                    sgemv(trans: true, rows: s.lk, cols: dh, a: vb, lda: s.ldv, x: used, y: ctx + b * s.ldc + h * dh)
                } else {
                    sgemm(transA: false, transB: false, m: s.lq, n: dh, k: s.lk,
                          a: used, lda: s.lk, b: vb, ldb: s.ldv, beta: 0,
                          c: ctx + b * s.lq * s.ldc + h * dh, ldc: s.ldc)
                }
            }
        }
    }

    /// out[lk, dh] (=, or += when accumulating) = weightsᵀ · rows, weights [lq, lk], rows
    /// [lq, dh]: the gradient of keys (weights dS, rows Q) or values (weights P, rows dctx)
    /// of one (sample, head). One query row is a rank-1 update (sger).
    @inline(__always)
    static func keyValueGradient(_ out: FPtr, ld: Int, weights: CFPtr, rows: CFPtr, ldRows: Int,
                                 shape s: AttentionShape, accumulate: Bool) {
        if s.lq == 1 {
            if !accumulate { for t in 0..<s.lk { (out + t * ld).update(repeating: 0, count: s.headDim) } }
            sger(m: s.lk, n: s.headDim, x: weights, y: rows, a: out, lda: ld)
        } else {
            sgemm(transA: true, transB: false, m: s.lk, n: s.headDim, k: s.lq, a: weights, lda: s.lk, b: rows, ldb: ldRows,
                  beta: accumulate ? 1 : 0, c: out, ldc: ld)
        }
    }

    /// Backward of `forward`. dq is written (=) unless `accumulateQ`; dk and dv are written
    /// unless `accumulateKV` (shared K/V across layers accumulate). Any gradient may be nil.
    /// `scratch` holds 2 × `scratchCount(shape)` floats. Each (sample, head) pair writes
    /// only its own slices, so the pairs run on the worker team.
    public static func backward(dq: FPtr?, dk: FPtr?, dv: FPtr?, dctx: CFPtr, probs: CFPtr,
                                q: CFPtr, k: CFPtr, v: CFPtr, shape s: AttentionShape,
                                ldDq: Int, ldDk: Int, ldDv: Int,
                                accumulateQ: Bool = false, accumulateKV: Bool = false,
                                dropMask: UnsafePointer<UInt8>? = nil, dropScale: Float = 1, scratch: FPtr) {
        let dh = s.headDim, plane = s.lq * s.lk
        WorkerTeam.shared.forEachChunk(s.batch * s.heads, itemSize: plane * dh) { pairs, part in
            let dp = scratch + 2 * part * plane, pd = dp + plane
            for pair in pairs {
                let b = pair / s.heads, h = pair % s.heads
                let qb = q + b * s.lq * s.ldq + h * dh
                let kb = k + b * s.lk * s.ldk + h * dh
                let vb = v + b * s.lk * s.ldv + h * dh
                let dcb = dctx + b * s.lq * s.ldc + h * dh
                let p = probs + (b * s.heads + h) * plane
                let mb = dropMask.map { $0 + (b * s.heads + h) * plane }
                let one = s.lq == 1
                // dP (after dropout) = dctx Vᵀ
                if one {
                    sgemv(trans: false, rows: s.lk, cols: dh, a: vb, lda: s.ldv, x: dcb, y: dp)
                } else {
                    sgemm(transA: false, transB: true, m: s.lq, n: s.lk, k: dh,
                          a: dcb, lda: s.ldc, b: vb, ldb: s.ldv, beta: 0, c: dp, ldc: s.lk)
                }
                // dV = P_droppedᵀ dctx
                if let dv = dv {
                    var used = p
                    if let mb = mb {
                        for i in 0..<plane { pd[i] = mb[i] != 0 ? p[i] * dropScale : 0 }
                        used = CFPtr(pd)
                    }
                    keyValueGradient(dv + b * s.lk * ldDv + h * dh, ld: ldDv, weights: used, rows: dcb, ldRows: s.ldc,
                                     shape: s, accumulate: accumulateKV)
                }
                if let mb = mb { for i in 0..<plane { dp[i] = mb[i] != 0 ? dp[i] * dropScale : 0 } }
                // softmax backward, scaled: dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
                for r in 0..<s.lq {
                    let pr = p + r * s.lk, dr = dp + r * s.lk
                    var dot: Float = 0
                    for j in 0..<s.lk { dot += pr[j] * dr[j] }
                    for j in 0..<s.lk { dr[j] = s.scale * pr[j] * (dr[j] - dot) }
                }
                if let dq = dq {
                    if one {
                        sgemv(trans: true, rows: s.lk, cols: dh, a: kb, lda: s.ldk, x: dp, beta: accumulateQ ? 1 : 0,
                              y: dq + b * ldDq + h * dh)
                    } else {
                        sgemm(transA: false, transB: false, m: s.lq, n: dh, k: s.lk,
                              a: dp, lda: s.lk, b: kb, ldb: s.ldk, beta: accumulateQ ? 1 : 0,
                              c: dq + b * s.lq * ldDq + h * dh, ldc: ldDq)
                    }
                }
                if let dk = dk {
                    keyValueGradient(dk + b * s.lk * ldDk + h * dh, ld: ldDk, weights: dp, rows: qb, ldRows: s.ldq,
                                     shape: s, accumulate: accumulateKV)
                }
            }
        }
    }
}
