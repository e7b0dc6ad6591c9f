// Cross-modal encoder (method section 3): text rows attend to audio and video frames
// (single head, scale 1/sqrt(e)); Y = Y_a + Y_v + X; X' = Dropout(fc(LN(Y))) + Y.
// K and V depend only on the raw modality, so they are computed once per parameter
// set (once in all when the layers share parameters, as the reference).
import SKESLKernels

struct ModalityKV {
    var ln: FPtr, mean: FPtr, rstd: FPtr, kv: FPtr   // kv [B*T, 2e]: K in columns 0..<e, V in e..<2e
    var keyMask: FPtr?                               // additive [B, T] when padding is masked
    var dkv: FPtr? = nil
}

struct CMModalityActs { var ln: FPtr, mean: FPtr, rstd: FPtr, q: FPtr, probs: FPtr, ctx: FPtr }

struct CMLayerActs {
    var xIn: FPtr
    var a: CMModalityActs, v: CMModalityActs
    var y: FPtr, z: FPtr, meanZ: FPtr, rstdZ: FPtr, mask: UnsafeMutablePointer<UInt8>?, out: FPtr
}

struct CrossModalActs {
    var kvA: [ModalityKV] = [], kvV: [ModalityKV] = []
    var layers: [CMLayerActs] = []
}

extension SKESLNetwork {
    var cmDropout: Float { state.training ? config.crossmodal.dropout : 0 }

    private func modalityKV(_ x: CFPtr, frames T: Int, dim D: Int, lengths: UnsafePointer<Int32>, B: Int,
                            lnW: Int, lnB: Int, kvW: Int, kvB: Int) -> ModalityKV {
        let c = config.crossmodal, e = c.attentionDim
        let kv = ModalityKV(ln: arena.floats(B * T * D), mean: arena.floats(B * T), rstd: arena.floats(B * T),
                            kv: arena.floats(B * T * 2 * e), keyMask: nil)
        LayerNorm.forward(kv.ln, mean: kv.mean, rstd: kv.rstd, x, gamma: p(lnW), beta: p(lnB), rows: B * T, dim: D,
                          eps: c.layerNormEps)
        Linear.forward(kv.kv, kv.ln, weight: p(kvW), bias: p(kvB), rows: B * T, inFeatures: D, outFeatures: 2 * e)
        var out = kv
        if c.maskModalityPadding {
            let m = arena.floats(B * T)
            for s in 0..<B {
                var n = Int(lengths[s]); if n <= 0 || n > T { n = T }
                for t in 0..<T { m[s * T + t] = t < n ? 0 : -Float.greatestFiniteMagnitude }
            }
            out.keyMask = m
        }
        return out
    }

    /// Every text row of every sample (B x L rows of x0). The [MASK]-row-only path is
    /// Network+CrossModalRows.swift; it shares layerTail, keyed by each row's position.
    func crossModalForward(_ x0: FPtr, _ b: Batch) -> FPtr {
        let c = config.crossmodal, e = c.attentionDim
        let B = b.size, L = b.textLength, N = B * L, H = config.bert.hiddenSize
        let Ta = b.audioFrames, Tv = b.videoFrames
        var acts = CrossModalActs()
        for s in cmaSets {
            acts.kvA.append(modalityKV(b.audio, frames: Ta, dim: c.audioDim, lengths: b.audioLengths, B: B,
                                       lnW: s.a.lnModW, lnB: s.a.lnModB, kvW: s.a.kvW, kvB: s.a.kvB))
            acts.kvV.append(modalityKV(b.video, frames: Tv, dim: c.videoDim, lengths: b.videoLengths, B: B,
                                       lnW: s.v.lnModW, lnB: s.v.lnModB, kvW: s.v.kvW, kvB: s.v.kvB))
        }
        let scale = 1 / Float(e).squareRoot()
        var x = x0
        for l in 0..<c.layers {
            let si = c.shared ? 0 : l
            let o = cmaSets[si]
            func attend(_ mo: ModalityOffsets, _ kv: ModalityKV, frames T: Int) -> CMModalityActs {
                let m = CMModalityActs(ln: arena.floats(N * H), mean: arena.floats(N), rstd: arena.floats(N),
                                       q: arena.floats(N * e), probs: arena.floats(B * L * T), ctx: arena.floats(N * e))
                LayerNorm.forward(m.ln, mean: m.mean, rstd: m.rstd, x, gamma: p(mo.lnTextW), beta: p(mo.lnTextB),
                                  rows: N, dim: H, eps: c.layerNormEps)
                Linear.forward(m.q, m.ln, weight: p(mo.qW), bias: p(mo.qB), rows: N, inFeatures: H, outFeatures: e)
                let shape = AttentionShape(batch: B, heads: 1, lq: L, lk: T, headDim: e, ldq: e, ldk: 2 * e, ldv: 2 * e,
                                           ldc: e, scale: scale)
                Attention.forward(ctx: m.ctx, probs: m.probs, q: m.q, k: kv.kv, v: kv.kv + e, keyMaskAdd: kv.keyMask, shape: shape)
                return m
            }
            let ma = attend(o.a, acts.kvA[si], frames: Ta)
            let mv = attend(o.v, acts.kvV[si], frames: Tv)
            let r = layerTail(x, ctxA: ma.ctx, ctxV: mv.ctx, o: o, layer: l, rows: N, perSample: L, rowOffsets: nil)
            let (y, z, meanZ, rstdZ, mask, out) = (r.y, r.z, r.meanZ, r.rstdZ, r.mask, r.out)
            acts.layers.append(CMLayerActs(xIn: x, a: ma, v: mv, y: y, z: z, meanZ: meanZ, rstdZ: rstdZ, mask: mask, out: out))
            x = out
        }
        state.cm = acts
        return x
    }

    /// Backward through the encoder; returns the gradient of its input (BERT's output).
    func crossModalBackward(_ dTop: FPtr, _ b: Batch) -> FPtr {
        let c = config.crossmodal, e = c.attentionDim
        let B = b.size, L = b.textLength, N = B * L, H = config.bert.hiddenSize
        let Ta = b.audioFrames, Tv = b.videoFrames
        let scale = 1 / Float(e).squareRoot()
        var acts = state.cm
        for i in 0..<acts.kvA.count {
            let da = arena.floats(B * Ta * 2 * e); da.update(repeating: 0, count: B * Ta * 2 * e); acts.kvA[i].dkv = da
            let dv = arena.floats(B * Tv * 2 * e); dv.update(repeating: 0, count: B * Tv * 2 * e); acts.kvV[i].dkv = dv
        }
        let dF = arena.floats(N * H), dZ = arena.floats(N * H), dY = arena.floats(N * H)
        let dCtx = arena.floats(N * e), dQ = arena.floats(N * e), dLn = arena.floats(N * H)
        let dIn = [arena.floats(N * H), arena.floats(N * H)]
        let scratch = arena.floats(2 * Attention.scratchCount(lq: L, lk: max(Ta, Tv)))
        var dx = dTop
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let si = c.shared ? 0 : l
            let o = cmaSets[si], a = acts.layers[l]
            layerTailBackward(dx, y: a.y, z: a.z, meanZ: a.meanZ, rstdZ: a.rstdZ, mask: a.mask, o: o, rows: N, dF: dF, dZ: dZ, dY: dY)
            let dXin = dIn[l % 2]
            dXin.update(from: dY, count: N * H)
            for (mo, ma, kv, T) in [(o.a, a.a, acts.kvA[si], Ta), (o.v, a.v, acts.kvV[si], Tv)] {
                Linear.backward(dx: dCtx, dw: g(mo.outW), db: g(mo.outB), dy: dY, x: ma.ctx, weight: p(mo.outW),
                                rows: N, inFeatures: e, outFeatures: H)
                let shape = AttentionShape(batch: B, heads: 1, lq: L, lk: T, headDim: e, ldq: e, ldk: 2 * e, ldv: 2 * e,
                                           ldc: e, scale: scale)
                Attention.backward(dq: dQ, dk: kv.dkv!, dv: kv.dkv! + e, dctx: dCtx, probs: ma.probs, q: ma.q, k: kv.kv, v: kv.kv + e,
                                   shape: shape, ldDq: e, ldDk: 2 * e, ldDv: 2 * e, accumulateKV: true, scratch: scratch)
                Linear.backward(dx: dLn, dw: g(mo.qW), db: g(mo.qB), dy: dQ, x: ma.ln, weight: p(mo.qW),
                                rows: N, inFeatures: H, outFeatures: e)
                LayerNorm.backward(dx: dXin, dgamma: g(mo.lnTextW), dbeta: g(mo.lnTextB), dy: dLn, x: a.xIn,
                                   mean: ma.mean, rstd: ma.rstd, gamma: p(mo.lnTextW), rows: N, dim: H, accumulate: true)
            }
            dx = dXin
        }
        // K and V projections and the modality LayerNorms. The raw features need no
        // gradient, so the [rows, D] gradient of the normalised features is never formed:
        // with x̂ the normalised features, G = dKVᵀ x̂ and s = Σ_rows dKV give
        //   dW = G·diag(γ) + s βᵀ,  db = s,  dγ_d = Σ_j W[j,d] G[j,d],  dβ_d = Σ_j W[j,d] s_j.
        for (i, st) in cmaSets.enumerated() {
            for (mo, kv, T, D, raw) in [(st.a, acts.kvA[i], Ta, c.audioDim, b.audio), (st.v, acts.kvV[i], Tv, c.videoDim, b.video)] {
                let R = B * T, J = 2 * e
                let xhat = arena.floats(R * D)
                for r in 0..<R {
                    let m = kv.mean[r], rs = kv.rstd[r], xr = raw + r * D, o = xhat + r * D
                    for d in 0..<D { o[d] = (xr[d] - m) * rs }
                }
                let G = arena.floats(J * D)
                sgemm(transA: true, transB: false, m: J, n: D, k: R, a: kv.dkv!, lda: J, b: xhat, ldb: D, beta: 0, c: G, ldc: D)
                let sum = arena.floats(J)
                sum.update(repeating: 0, count: J)
                for r in 0..<R { let row = kv.dkv! + r * J; for j in 0..<J { sum[j] += row[j] } }
                // The key half of s is exactly zero (softmax ignores a shift common to a row).
                sum.update(repeating: 0, count: e)
                let W = p(mo.kvW), gamma = p(mo.lnModW), beta = p(mo.lnModB)
                if let dW = g(mo.kvW), let db = g(mo.kvB) {
                    for j in 0..<J {
                        let gr = G + j * D, wr = dW + j * D, sj = sum[j]
                        for d in 0..<D { wr[d] += gr[d] * gamma[d] + sj * beta[d] }
                        db[j] += sj
                    }
                }
                if let dGamma = g(mo.lnModW), let dBeta = g(mo.lnModB) {
                    for j in 0..<J {
                        let gr = G + j * D, wr = W + j * D, sj = sum[j]
                        for d in 0..<D { dGamma[d] += wr[d] * gr[d]; dBeta[d] += wr[d] * sj }
                    }
                }
            }
        }
        return dx
    }
    /// The part of a layer both encoder paths share, over `rows` text rows:
    /// Y = X + out_a(ctx_a) + out_v(ctx_v); X' = Dropout(fc(LN(Y))) + Y. The dropout mask of
    /// sample s covers its `perSample` rows, or, with `rowOffsets`, the one row at that position.
    func layerTail(_ x: FPtr, ctxA: FPtr, ctxV: FPtr, o: CrossModalOffsets, layer l: Int, rows N: Int, perSample L: Int,
                   rowOffsets: UnsafePointer<Int32>?) -> (y: FPtr, z: FPtr, meanZ: FPtr, rstdZ: FPtr, mask: UnsafeMutablePointer<UInt8>?, out: FPtr) {
        let c = config.crossmodal, e = c.attentionDim, H = config.bert.hiddenSize
        let B = N / L
        let y = arena.floats(N * H)
        let ba = p(o.a.outB), bv = p(o.v.outB)
        for r in 0..<N {
            let yr = y + r * H, xr = x + r * H
            for j in 0..<H { yr[j] = xr[j] + ba[j] + bv[j] }
        }
        sgemm(transA: false, transB: true, m: N, n: H, k: e, a: ctxA, lda: e, b: p(o.a.outW), ldb: e, beta: 1, c: y, ldc: H)
        sgemm(transA: false, transB: true, m: N, n: H, k: e, a: ctxV, lda: e, b: p(o.v.outW), ldb: e, beta: 1, c: y, ldc: H)
        let z = arena.floats(N * H), meanZ = arena.floats(N), rstdZ = arena.floats(N), out = arena.floats(N * H)
        LayerNorm.forward(z, mean: meanZ, rstd: rstdZ, y, gamma: p(o.lnW), beta: p(o.lnB), rows: N, dim: H, eps: c.layerNormEps)
        Linear.forward(out, z, weight: p(o.fcW), bias: p(o.fcB), rows: N, inFeatures: H, outFeatures: H)
        var mask: UnsafeMutablePointer<UInt8>? = nil
        let pDrop = cmDropout
        if pDrop > 0 {
            let m = arena.bytes(N * H)
            if let offs = rowOffsets {
                for s in 0..<B {
                    Dropout.maskSpan(m + s * H, start: Int(offs[s]) * H, count: H, p: pDrop, keys: state.keys!,
                                     sample: s, site: site("crossmodal.layers.\(l)"))
                }
            } else {
                Dropout.makeMask(m, batch: B, perSample: L * H, p: pDrop, keys: state.keys!, site: site("crossmodal.layers.\(l)"))
            }
            Dropout.apply(out, out, mask: m, count: N * H, p: pDrop)
            mask = m
        }
        Elementwise.accumulate(out, y, count: N * H)
        return (y, z, meanZ, rstdZ, mask, out)
    }

    /// Backward of `layerTail`: from dX' (`dx`) to dY, the gradient of Y = X + out_a + out_v
    /// (into `dY`), accumulating the fc and LayerNorm parameters' gradients.
    func layerTailBackward(_ dx: FPtr, y: FPtr, z: FPtr, meanZ: FPtr, rstdZ: FPtr, mask: UnsafeMutablePointer<UInt8>?,
                           o: CrossModalOffsets, rows N: Int, dF: FPtr, dZ: FPtr, dY: FPtr) {
        let H = config.bert.hiddenSize
        dY.update(from: dx, count: N * H)
        if let m = mask { Dropout.backward(dF, dx, mask: m, count: N * H, p: cmDropout) } else { dF.update(from: dx, count: N * H) }
        Linear.backward(dx: dZ, dw: g(o.fcW), db: g(o.fcB), dy: dF, x: z, weight: p(o.fcW), rows: N, inFeatures: H, outFeatures: H)
        LayerNorm.backward(dx: dY, dgamma: g(o.lnW), dbeta: g(o.lnB), dy: dZ, x: y, mean: meanZ, rstd: rstdZ,
                           gamma: p(o.lnW), rows: N, dim: H, accumulate: true)
    }
}
