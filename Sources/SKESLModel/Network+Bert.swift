// BERT forward and backward (Hugging Face BertModel semantics, eager attention).
import SKESLKernels

struct BertEmbeddingActs {
    var sum: FPtr? = nil, ln: FPtr? = nil, mean: FPtr? = nil, rstd: FPtr? = nil
    var mask: UnsafeMutablePointer<UInt8>? = nil
}

struct BertLayerActs {
    var xIn: FPtr
    var qkv: FPtr, probs: FPtr, probsMask: UnsafeMutablePointer<UInt8>?, ctx: FPtr
    var attnDense: FPtr, m1: UnsafeMutablePointer<UInt8>?, res1: FPtr, h1: FPtr, mean1: FPtr, rstd1: FPtr
    var interPre: FPtr, interAct: FPtr, outDense: FPtr, m2: UnsafeMutablePointer<UInt8>?
    var res2: FPtr, out: FPtr, mean2: FPtr, rstd2: FPtr
}

extension SKESLNetwork {
    var bertDropout: Float { state.training ? config.bert.hiddenDropoutProb : 0 }
    var bertAttnDropout: Float { state.training ? config.bert.attentionProbsDropoutProb : 0 }

    /// Runs BERT (its first `layers` layers; all by default); returns the hidden state
    /// [B*L, H] after them.
    func bertForward(_ b: Batch, layers: Int? = nil) -> FPtr {
        let bc = config.bert
        let B = b.size, L = b.textLength, N = B * L, H = bc.hiddenSize, I = bc.intermediateSize
        let nh = bc.numAttentionHeads, dh = H / nh
        let keep = state.needsBackward && bertTrainable   // keep every layer's activations
        let keys = state.keys!
        let pHidden = bertDropout, pAttn = bertAttnDropout

        // Additive key mask: 0 for tokens, float32.min for padding (as Hugging Face).
        let maskAdd = arena.floats(N)
        for i in 0..<N { maskAdd[i] = b.attentionMask[i] != 0 ? 0 : -Float.greatestFiniteMagnitude }

        // Embeddings.
        var e = BertEmbeddingActs()
        e.sum = arena.floats(N * H); e.ln = arena.floats(N * H)
        e.mean = arena.floats(N); e.rstd = arena.floats(N)
        Embedding.forward(e.sum!, ids: b.inputIds, typeIds: b.tokenTypeIds, word: p(bertEmb.word),
                          position: p(bertEmb.position), type: p(bertEmb.type), batch: B, length: L, dim: H)
        LayerNorm.forward(e.ln!, mean: e.mean, rstd: e.rstd, e.sum!, gamma: p(bertEmb.lnW), beta: p(bertEmb.lnB),
                          rows: N, dim: H, eps: bc.layerNormEps)
        var x = e.ln!
        if pHidden > 0 {
            let m = arena.bytes(N * H)
            Dropout.makeMask(m, batch: B, perSample: L * H, p: pHidden, keys: keys, site: site("bert.embeddings"))
            let xd = arena.floats(N * H)
            Dropout.apply(xd, x, mask: m, count: N * H, p: pHidden)
            e.mask = m
            x = xd
        }
        state.emb = e

        // Layers. Without backward all layers share one set of buffers (outputs ping-pong).
        var shared: BertLayerActs? = nil
        var acts: [BertLayerActs] = []
        var outs: [FPtr] = []
        if !keep { outs = [arena.floats(N * H), arena.floats(N * H)] }
        let scratch = arena.floats(Attention.scratchCount(lq: L, lk: L))
        for (l, o) in bertLayers.prefix(layers ?? bertLayers.count).enumerated() {
            var a: BertLayerActs
            if keep || shared == nil {
                a = BertLayerActs(
                    xIn: x, qkv: arena.floats(N * 3 * H), probs: arena.floats(B * nh * L * L),
                    probsMask: pAttn > 0 ? arena.bytes(B * nh * L * L) : nil, ctx: arena.floats(N * H),
                    attnDense: arena.floats(N * H), m1: pHidden > 0 ? arena.bytes(N * H) : nil,
                    res1: arena.floats(N * H), h1: arena.floats(N * H), mean1: arena.floats(N), rstd1: arena.floats(N),
                    interPre: arena.floats(N * I), interAct: arena.floats(N * I), outDense: arena.floats(N * H),
                    m2: pHidden > 0 ? arena.bytes(N * H) : nil, res2: arena.floats(N * H),
                    out: keep ? arena.floats(N * H) : outs[0], mean2: arena.floats(N), rstd2: arena.floats(N))
                if !keep { shared = a }
            } else {
                a = shared!
                a.out = outs[l % 2]
            }
            a.xIn = x
            let name = "bert.encoder.layer.\(l)"
            // Self-attention: one [3H, H] product for query, key and value.
            Linear.forward(a.qkv, x, weight: p(o.qkvW), bias: p(o.qkvB), rows: N, inFeatures: H, outFeatures: 3 * H)
            let shape = AttentionShape(batch: B, heads: nh, lq: L, lk: L, headDim: dh, ldq: 3 * H, ldk: 3 * H, ldv: 3 * H,
                                       ldc: H, scale: 1 / Float(dh).squareRoot())
            if let pm = a.probsMask {
                Dropout.makeMask(pm, batch: B, perSample: nh * L * L, p: pAttn, keys: keys, site: site(name + ".attention.probs"))
            }
            Attention.forward(ctx: a.ctx, probs: a.probs, q: a.qkv, k: a.qkv + H, v: a.qkv + 2 * H, keyMaskAdd: maskAdd,
                              shape: shape, dropMask: a.probsMask, dropScale: 1 / (1 - pAttn), scratch: scratch)
            Linear.forward(a.attnDense, a.ctx, weight: p(o.oW), bias: p(o.oB), rows: N, inFeatures: H, outFeatures: H)
            if let m = a.m1 {
                Dropout.makeMask(m, batch: B, perSample: L * H, p: pHidden, keys: keys, site: site(name + ".attention.output"))
            }
            LayerNorm.residualForward(a.h1, sum: a.res1, mean: a.mean1, rstd: a.rstd1, sublayer: a.attnDense, mask: a.m1, p: pHidden,
                                      residual: x, gamma: p(o.ln1W), beta: p(o.ln1B), rows: N, dim: H, eps: bc.layerNormEps)
            // Feed-forward.
            Linear.forward(a.interPre, a.h1, weight: p(o.iW), bias: nil, rows: N, inFeatures: H, outFeatures: I)
            GELU.biasForward(a.interAct, pre: a.interPre, bias: p(o.iB), rows: N, dim: I)
            Linear.forward(a.outDense, a.interAct, weight: p(o.outW), bias: p(o.outB), rows: N, inFeatures: I, outFeatures: H)
            if let m = a.m2 {
                Dropout.makeMask(m, batch: B, perSample: L * H, p: pHidden, keys: keys, site: site(name + ".output"))
            }
            LayerNorm.residualForward(a.out, sum: a.res2, mean: a.mean2, rstd: a.rstd2, sublayer: a.outDense, mask: a.m2, p: pHidden,
                                      residual: a.h1, gamma: p(o.ln2W), beta: p(o.ln2B), rows: N, dim: H, eps: bc.layerNormEps)
            x = a.out
            if keep { acts.append(a) }
        }
        state.bert = acts
        state.bertOut = x
        state.bertMaskAdd = maskAdd
        return x
    }

    /// BERT's last layer for one row per sample (`positions[b]`), given the input x [B*L, H]
    /// of that layer: keys and values of every row, the query, attention, feed-forward and
    /// LayerNorms of the one row. Exactly the rows of the full computation, dropout included
    /// (masks are drawn for the same elements). Returns [B, H]. Forward only (frozen BERT).
    func bertLastLayerRows(_ x: FPtr, _ b: Batch, positions: UnsafePointer<Int32>) -> FPtr {
        let bc = config.bert
        let B = b.size, L = b.textLength, N = B * L, H = bc.hiddenSize, I = bc.intermediateSize
        let nh = bc.numAttentionHeads, dh = H / nh
        let l = bertLayers.count - 1, o = bertLayers[l], name = "bert.encoder.layer.\(l)"
        let keys = state.keys!
        let pHidden = bertDropout, pAttn = bertAttnDropout
        let maskAdd = state.bertMaskAdd!
        // Keys and values of all rows: rows H..<3H of the stacked [3H, H] weight.
        let kv = arena.floats(N * 2 * H)
        Linear.forward(kv, x, weight: p(o.qkvW) + H * H, bias: p(o.qkvB) + H, rows: N, inFeatures: H, outFeatures: 2 * H)
        let xr = arena.floats(B * H), q = arena.floats(B * H), ctx = arena.floats(B * H)
        GatherRows.forward(xr, x, positions: positions, batch: B, length: L, dim: H)
        Linear.forward(q, xr, weight: p(o.qkvW), bias: p(o.qkvB), rows: B, inFeatures: H, outFeatures: H)
        let probs = arena.floats(L), drop = arena.bytes(max(L, H))
        let scale = 1 / Float(dh).squareRoot()
        for s in 0..<B {
            let i = Int(positions[s])
            for h in 0..<nh {
                let kb = kv + s * L * 2 * H + h * dh, vb = kb + H
                sgemv(trans: false, rows: L, cols: dh, alpha: scale, a: kb, lda: 2 * H, x: q + s * H + h * dh, y: probs)
                Attention.softmaxRows(probs, rows: 1, n: L, maskAdd: maskAdd + s * L)
                if pAttn > 0 {
                    Dropout.maskSpan(drop, start: h * L * L + i * L, count: L, p: pAttn, keys: keys, sample: s,
                                     site: site(name + ".attention.probs"))
                    Dropout.apply(probs, probs, mask: drop, count: L, p: pAttn)
                }
                sgemv(trans: true, rows: L, cols: dh, a: vb, lda: 2 * H, x: probs, y: ctx + s * H + h * dh)
            }
        }
        func hiddenDropout(_ t: FPtr, _ siteName: String) {
            guard pHidden > 0 else { return }
            for s in 0..<B {
                Dropout.maskSpan(drop, start: Int(positions[s]) * H, count: H, p: pHidden, keys: keys, sample: s, site: site(siteName))
                Dropout.apply(t + s * H, t + s * H, mask: drop, count: H, p: pHidden)
            }
        }
        let dense = arena.floats(B * H), res = arena.floats(B * H), h1 = arena.floats(B * H)
        Linear.forward(dense, ctx, weight: p(o.oW), bias: p(o.oB), rows: B, inFeatures: H, outFeatures: H)
        hiddenDropout(dense, name + ".attention.output")
        LayerNorm.residualForward(h1, sum: res, mean: nil, rstd: nil, sublayer: dense, mask: nil, p: 0, residual: xr,
                                  gamma: p(o.ln1W), beta: p(o.ln1B), rows: B, dim: H, eps: bc.layerNormEps)
        let pre = arena.floats(B * I), act = arena.floats(B * I), out = arena.floats(B * H)
        Linear.forward(pre, h1, weight: p(o.iW), bias: nil, rows: B, inFeatures: H, outFeatures: I)
        GELU.biasForward(act, pre: pre, bias: p(o.iB), rows: B, dim: I)
        Linear.forward(out, act, weight: p(o.outW), bias: p(o.outB), rows: B, inFeatures: I, outFeatures: H)
        hiddenDropout(out, name + ".output")
        let y = arena.floats(B * H)
        LayerNorm.residualForward(y, sum: res, mean: nil, rstd: nil, sublayer: out, mask: nil, p: 0, residual: h1,
                                  gamma: p(o.ln2W), beta: p(o.ln2B), rows: B, dim: H, eps: bc.layerNormEps)
        return y
    }

    /// Backward of out = LN(residual + Dropout(sublayer)): the gradient of the residual input
    /// into `dResidual`, of the sublayer output into `dSublayer`; LayerNorm parameters accumulate.
    func residualNormBackward(_ dOut: CFPtr, sum: CFPtr, mean: CFPtr, rstd: CFPtr, lnW: Int, lnB: Int,
                              mask: UnsafeMutablePointer<UInt8>?, rows N: Int, dSublayer: FPtr, dResidual: FPtr) {
        LayerNorm.residualBackward(dResidual: dResidual, dSublayer: dSublayer, mask: mask, p: bertDropout,
                                   dgamma: g(lnW), dbeta: g(lnB), dy: dOut, sum: sum, mean: mean, rstd: rstd,
                                   gamma: p(lnW), rows: N, dim: config.bert.hiddenSize)
    }

    /// Backward through BERT from dX (gradient of its last hidden state); parameters'
    /// gradients accumulate into `grads`.
    func bertBackward(_ dOut: FPtr, _ b: Batch) {
        let bc = config.bert
        let B = b.size, L = b.textLength, N = B * L, H = bc.hiddenSize, I = bc.intermediateSize
        let nh = bc.numAttentionHeads, dh = H / nh
        let pHidden = bertDropout, pAttn = bertAttnDropout
        var dx = dOut                       // gradient flowing into the current layer's output
        let dRes = arena.floats(N * H), dH1 = arena.floats(N * H), dCtx = arena.floats(N * H)
        let dInter = arena.floats(N * I), dQKV = arena.floats(N * 3 * H)
        let dIn = [arena.floats(N * H), arena.floats(N * H)]
        let scratch = arena.floats(2 * Attention.scratchCount(lq: L, lk: L))
        for l in stride(from: bertLayers.count - 1, through: 0, by: -1) {
            let o = bertLayers[l], a = state.bert[l]
            // out = LN2(res2), res2 = h1 + drop(outDense)
            residualNormBackward(dx, sum: a.res2, mean: a.mean2, rstd: a.rstd2, lnW: o.ln2W, lnB: o.ln2B, mask: a.m2,
                                 rows: N, dSublayer: dRes, dResidual: dH1)
            Linear.backward(dx: dInter, dw: g(o.outW), db: g(o.outB), dy: dRes, x: a.interAct, weight: p(o.outW),
                            rows: N, inFeatures: I, outFeatures: H)
            GELU.backward(dInter, dy: dInter, x: a.interPre, count: N * I)
            Linear.backward(dx: dH1, dw: g(o.iW), db: g(o.iB), dy: dInter, x: a.h1, weight: p(o.iW),
                            rows: N, inFeatures: H, outFeatures: I, accumulateDx: true)
            // h1 = LN1(res1), res1 = x + drop(attnDense)
            let dxIn = dIn[l % 2]
            residualNormBackward(dH1, sum: a.res1, mean: a.mean1, rstd: a.rstd1, lnW: o.ln1W, lnB: o.ln1B, mask: a.m1,
                                 rows: N, dSublayer: dRes, dResidual: dxIn)
            Linear.backward(dx: dCtx, dw: g(o.oW), db: g(o.oB), dy: dRes, x: a.ctx, weight: p(o.oW),
                            rows: N, inFeatures: H, outFeatures: H)
            let shape = AttentionShape(batch: B, heads: nh, lq: L, lk: L, headDim: dh, ldq: 3 * H, ldk: 3 * H, ldv: 3 * H,
                                       ldc: H, scale: 1 / Float(dh).squareRoot())
            Attention.backward(dq: dQKV, dk: dQKV + H, dv: dQKV + 2 * H, dctx: dCtx, probs: a.probs,
                               q: a.qkv, k: a.qkv + H, v: a.qkv + 2 * H, shape: shape,
                               ldDq: 3 * H, ldDk: 3 * H, ldDv: 3 * H,
                               dropMask: a.probsMask, dropScale: 1 / (1 - pAttn), scratch: scratch)
            Linear.backward(dx: dxIn, dw: g(o.qkvW), db: g(o.qkvB), dy: dQKV, x: a.xIn, weight: p(o.qkvW),
                            rows: N, inFeatures: H, outFeatures: 3 * H, accumulateDx: true)
            // key.bias: exactly zero gradient (softmax ignores a shift common to a row).
            if let gk = g(o.qkvB) { (gk + H).update(repeating: 0, count: H) }
            dx = dxIn
            reportReady(downTo: o.qkvW)
        }
        // Embeddings: x0 = drop(LN(sum))
        let e = state.emb
        if let m = e.mask { Dropout.backward(dx, dx, mask: m, count: N * H, p: pHidden) }
        LayerNorm.backward(dx: dRes, dgamma: g(bertEmb.lnW), dbeta: g(bertEmb.lnB), dy: dx, x: e.sum!,
                           mean: e.mean!, rstd: e.rstd!, gamma: p(bertEmb.lnW), rows: N, dim: H)
        Embedding.backward(dWord: g(bertEmb.word), dPosition: g(bertEmb.position), dType: g(bertEmb.type),
                           dOut: dRes, ids: b.inputIds, typeIds: b.tokenTypeIds, batch: B, length: L, dim: H,
                           paddingId: Int32(bc.padTokenId))
    }
}
