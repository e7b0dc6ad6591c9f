// The cross-modal encoder for one text row per sample (the pretraining [MASK] row).
// With a single query the keys and values need not exist: with x̂ the normalised frames,
// LN(M) = x̂ diag(γ) + β, K = LN(M) W_kᵀ + b_k and V = LN(M) W_vᵀ + b_v,
//   scores = K q / sqrt(e) = x̂ (γ ⊙ W_kᵀ q) / sqrt(e) + (terms equal along the row, which
//            softmax ignores: β·W_kᵀq and b_k·q)
//   context = Vᵀ p = W_v (γ ⊙ x̂ᵀ p + β) + b_v            (p sums to 1)
// so each layer costs O(T·D + D·e) per sample instead of O(T·D·e) for K and V. Exactly
// the full computation's values (tests: RowPathTests, PyTorch parity, finite differences).
import SKESLKernels

struct RowModalityActs {
    var lnT: FPtr, mean: FPtr, rstd: FPtr   // LN_text of the input row [B, H]
    var q: FPtr                             // [B, e]
    var qp: FPtr                            // q W_k        [B, D]
    var probs: FPtr                         // [B, T]
    var w: FPtr                             // x̂ᵀ p         [B, D]
    var a: FPtr                             // γ ⊙ w + β    [B, D]
    var ctx: FPtr                           // [B, e]
}

struct RowLayerActs {
    var xIn: FPtr
    var a: RowModalityActs, v: RowModalityActs
    var y: FPtr, z: FPtr, meanZ: FPtr, rstdZ: FPtr, mask: UnsafeMutablePointer<UInt8>?, out: FPtr
}

struct RowEncoderActs {
    var xhatA: FPtr? = nil, xhatV: FPtr? = nil
    var keyMaskA: FPtr? = nil, keyMaskV: FPtr? = nil
    var layers: [RowLayerActs] = []
}

extension SKESLNetwork {
    /// Normalised frames x̂ = (x - mean) / std per frame [B*T, D] (LayerNorm without γ, β),
    /// and the additive key mask when padding is masked.
    private func normalisedFrames(_ x: CFPtr, rows R: Int, dim D: Int, frames T: Int, lengths: UnsafePointer<Int32>, B: Int) -> (FPtr, FPtr?) {
        let c = config.crossmodal
        let xhat = arena.floats(R * D), ones = arena.floats(D), zeros = arena.floats(D)
        ones.update(repeating: 1, count: D); zeros.update(repeating: 0, count: D)
        LayerNorm.forward(xhat, mean: nil, rstd: nil, x, gamma: ones, beta: zeros, rows: R, dim: D, eps: c.layerNormEps)
        var mask: FPtr? = nil
        if c.maskModalityPadding {
            let m = arena.floats(B * T)
            for s in 0..<B {
                var n = Int(lengths[s]); if n <= 0 || n > T { n = T }
                for t in 0..<T { m[s * T + t] = t < n ? 0 : -Float.greatestFiniteMagnitude }
            }
            mask = m
        }
        return (xhat, mask)
    }

    /// Encoder over x0 [B, H] (one row per sample at `positions`, which key its dropout).
    func crossModalRowsForward(_ x0: FPtr, _ b: Batch, positions: UnsafePointer<Int32>) -> FPtr {
        let c = config.crossmodal, e = c.attentionDim
        let B = b.size, H = config.bert.hiddenSize, Ta = b.audioFrames, Tv = b.videoFrames
        var acts = RowEncoderActs()
        let (xa, ma) = normalisedFrames(b.audio, rows: B * Ta, dim: c.audioDim, frames: Ta, lengths: b.audioLengths, B: B)
        let (xv, mv) = normalisedFrames(b.video, rows: B * Tv, dim: c.videoDim, frames: Tv, lengths: b.videoLengths, B: B)
        acts.xhatA = xa; acts.xhatV = xv; acts.keyMaskA = ma; acts.keyMaskV = mv
        let scale = 1 / Float(e).squareRoot()
        var x = x0
        for l in 0..<c.layers {
            let o = cmaSets[c.shared ? 0 : l]
            func attend(_ mo: ModalityOffsets, _ xhat: FPtr, _ keyMask: FPtr?, frames T: Int, dim D: Int) -> RowModalityActs {
                let m = RowModalityActs(lnT: arena.floats(B * H), mean: arena.floats(B), rstd: arena.floats(B), q: arena.floats(B * e),
                                        qp: arena.floats(B * D), probs: arena.floats(B * T), w: arena.floats(B * D),
                                        a: arena.floats(B * D), ctx: arena.floats(B * e))
                LayerNorm.forward(m.lnT, mean: m.mean, rstd: m.rstd, x, gamma: p(mo.lnTextW), beta: p(mo.lnTextB),
                                  rows: B, dim: H, eps: c.layerNormEps)
                Linear.forward(m.q, m.lnT, weight: p(mo.qW), bias: p(mo.qB), rows: B, inFeatures: H, outFeatures: e)
                // q' = q W_k (W_k is [e, D]; the key weights are the first e rows of [2e, D]).
                sgemm(transA: false, transB: false, m: B, n: D, k: e, a: m.q, lda: e, b: p(mo.kvW), ldb: D, beta: 0, c: m.qp, ldc: D)
                let gamma = p(mo.lnModW), beta = p(mo.lnModB)
                let qt = arena.floats(D)
                for s in 0..<B {
                    let qps = m.qp + s * D
                    for d in 0..<D { qt[d] = gamma[d] * qps[d] }
                    let ps = m.probs + s * T, xs = xhat + s * T * D
                    sgemv(trans: false, rows: T, cols: D, alpha: scale, a: xs, lda: D, x: qt, y: ps)
                    Attention.softmaxRows(ps, rows: 1, n: T, maskAdd: keyMask.map { $0 + s * T })
                    let ws = m.w + s * D, as_ = m.a + s * D
                    sgemv(trans: true, rows: T, cols: D, a: xs, lda: D, x: ps, y: ws)
                    for d in 0..<D { as_[d] = gamma[d] * ws[d] + beta[d] }
                }
                // ctx = a W_vᵀ + b_v (the value weights are rows e..<2e of [2e, D]).
                Linear.forward(m.ctx, m.a, weight: p(mo.kvW) + e * D, bias: p(mo.kvB) + e, rows: B, inFeatures: D, outFeatures: e)
                return m
            }
            let ra = attend(o.a, xa, ma, frames: Ta, dim: c.audioDim)
            let rv = attend(o.v, xv, mv, frames: Tv, dim: c.videoDim)
            let r = layerTail(x, ctxA: ra.ctx, ctxV: rv.ctx, o: o, layer: l, rows: B, perSample: 1, rowOffsets: positions)
            let (y, z, meanZ, rstdZ, mask, out) = (r.y, r.z, r.meanZ, r.rstdZ, r.mask, r.out)
            acts.layers.append(RowLayerActs(xIn: x, a: ra, v: rv, y: y, z: z, meanZ: meanZ, rstdZ: rstdZ, mask: mask, out: out))
            x = out
        }
        state.rowEncoder = acts
        return x
    }

    /// Backward of `crossModalRowsForward`; the gradient of its input is not needed (BERT
    /// is frozen on this path).
    func crossModalRowsBackward(_ dTop: FPtr, _ b: Batch) {
        let c = config.crossmodal, e = c.attentionDim
        let B = b.size, H = config.bert.hiddenSize, Ta = b.audioFrames, Tv = b.videoFrames
        let acts = state.rowEncoder
        let scale = 1 / Float(e).squareRoot()
        let dF = arena.floats(B * H), dZ = arena.floats(B * H), dY = arena.floats(B * H)
        let dCtx = arena.floats(B * e), dQ = arena.floats(B * e), dLn = arena.floats(B * H)
        let Dmax = max(c.audioDim, c.videoDim)
        let da = arena.floats(B * Dmax), dqp = arena.floats(B * Dmax), gvec = arena.floats(Dmax)
        let dP = arena.floats(max(Ta, Tv)), u = arena.floats(Dmax)
        let dIn = [arena.floats(B * H), arena.floats(B * H)]
        var dx = dTop
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let o = cmaSets[c.shared ? 0 : l], a = acts.layers[l]
            layerTailBackward(dx, y: a.y, z: a.z, meanZ: a.meanZ, rstdZ: a.rstdZ, mask: a.mask, o: o, rows: B, dF: dF, dZ: dZ, dY: dY)
            let dXin = dIn[l % 2]
            dXin.update(from: dY, count: B * H)
            for (mo, ma, xhat, T, D) in [(o.a, a.a, acts.xhatA!, Ta, c.audioDim), (o.v, a.v, acts.xhatV!, Tv, c.videoDim)] {
                Linear.backward(dx: dCtx, dw: g(mo.outW), db: g(mo.outB), dy: dY, x: ma.ctx, weight: p(mo.outW),
                                rows: B, inFeatures: e, outFeatures: H)
                // ctx = a W_vᵀ + b_v
                Linear.backward(dx: da, dw: g(mo.kvW).map { $0 + e * D }, db: g(mo.kvB).map { $0 + e }, dy: dCtx, x: ma.a,
                                weight: p(mo.kvW) + e * D, rows: B, inFeatures: D, outFeatures: e)
                let gamma = p(mo.lnModW)
                let dGamma = g(mo.lnModW), dBeta = g(mo.lnModB)
                for s in 0..<B {
                    let das = da + s * D, xs = xhat + s * T * D, ps = ma.probs + s * T
                    // dp = LN(M) da (its β part is equal along the row: softmax ignores it)
                    for d in 0..<D { gvec[d] = gamma[d] * das[d] }
                    sgemv(trans: false, rows: T, cols: D, a: xs, lda: D, x: gvec, y: dP)
                    var dot: Float = 0
                    for t in 0..<T { dot += ps[t] * dP[t] }
                    for t in 0..<T { dP[t] = ps[t] * (dP[t] - dot) }        // ds (before the scale)
                    sgemv(trans: true, rows: T, cols: D, a: xs, lda: D, x: dP, y: u)
                    let qps = ma.qp + s * D, ws = ma.w + s * D, dq = dqp + s * D
                    for d in 0..<D { dq[d] = scale * gamma[d] * u[d] }
                    if let dg = dGamma, let db = dBeta {
                        for d in 0..<D { dg[d] += scale * qps[d] * u[d] + das[d] * ws[d]; db[d] += das[d] }
                    }
                }
                // q' = q W_k
                if let dWk = g(mo.kvW) {
                    sgemm(transA: true, transB: false, m: e, n: D, k: B, a: ma.q, lda: e, b: dqp, ldb: D, beta: 1, c: dWk, ldc: D)
                }
                sgemm(transA: false, transB: true, m: B, n: e, k: D, a: dqp, lda: D, b: p(mo.kvW), ldb: D, beta: 0, c: dQ, ldc: e)
                Linear.backward(dx: dLn, dw: g(mo.qW), db: g(mo.qB), dy: dQ, x: ma.lnT, weight: p(mo.qW),
                                rows: B, inFeatures: H, outFeatures: e)
                LayerNorm.backward(dx: dXin, dgamma: g(mo.lnTextW), dbeta: g(mo.lnTextB), dy: dLn, x: a.xIn,
                                   mean: ma.mean, rstd: ma.rstd, gamma: p(mo.lnTextW), rows: B, dim: H, accumulate: true)
            }
            dx = dXin
        }
    }
}
