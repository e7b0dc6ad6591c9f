// Finite-difference checks of each kernel's backward, inputs and parameters alike:
import Foundation
// loss = Σ w ⊙ f(x) with random w, so backward gets dy = w.
import XCTest
import SKESLKernels

final class Buf {
    let n: Int
    let p: UnsafeMutablePointer<Float>
    init(_ n: Int, seed: UInt64, scale: Float = 1) {
        self.n = n
        p = .allocate(capacity: max(n, 1))
        KeyedRandom(seed: seed, stream: "buf").fillUniform(p, n, lo: -scale, hi: scale)
    }
    init(zeros n: Int) { self.n = n; p = .allocate(capacity: max(n, 1)); p.initialize(repeating: 0, count: max(n, 1)) }
    deinit { p.deallocate() }
    func zero() { p.update(repeating: 0, count: n) }
}

/// Checks d(Σ w·f)/dx against `grad` for every element of `x` (small sizes).
func fdCheck(_ name: String, x: Buf, grad: Buf, eps: Float = 1e-2, tol: Double = 1e-2,
             _ loss: () -> Double, file: StaticString = #filePath, line: UInt = #line) {
    for i in 0..<x.n {
        let old = x.p[i]
        x.p[i] = old + eps; let lp = loss()
        x.p[i] = old - eps; let lm = loss()
        x.p[i] = old
        let num = (lp - lm) / (2 * Double(eps))
        let ana = Double(grad.p[i])
        XCTAssertEqual(ana, num, accuracy: tol * max(1, abs(num)), "\(name)[\(i)]", file: file, line: line)
    }
}

func dot(_ a: Buf, _ w: Buf) -> Double {
    var s: Double = 0
    for i in 0..<a.n { s += Double(a.p[i]) * Double(w.p[i]) }
    return s
}

final class KernelGradientTests: XCTestCase {
    func testLinear() {
        let n = 4, i = 5, o = 3
        let x = Buf(n * i, seed: 1), w = Buf(o * i, seed: 2), b = Buf(o, seed: 3), dy = Buf(n * o, seed: 4)
        let y = Buf(zeros: n * o)
        func loss() -> Double { Linear.forward(y.p, x.p, weight: w.p, bias: b.p, rows: n, inFeatures: i, outFeatures: o); return dot(y, dy) }
        let dx = Buf(zeros: n * i), dw = Buf(zeros: o * i), db = Buf(zeros: o)
        Linear.backward(dx: dx.p, dw: dw.p, db: db.p, dy: dy.p, x: x.p, weight: w.p, rows: n, inFeatures: i, outFeatures: o)
        fdCheck("dx", x: x, grad: dx, loss); fdCheck("dw", x: w, grad: dw, loss); fdCheck("db", x: b, grad: db, loss)
    }

    func testLayerNorm() {
        let r = 3, d = 6
        let x = Buf(r * d, seed: 5, scale: 2), g = Buf(d, seed: 6), bt = Buf(d, seed: 7), dy = Buf(r * d, seed: 8)
        let y = Buf(zeros: r * d), mean = Buf(zeros: r), rstd = Buf(zeros: r)
        func loss() -> Double { LayerNorm.forward(y.p, mean: mean.p, rstd: rstd.p, x.p, gamma: g.p, beta: bt.p, rows: r, dim: d, eps: 1e-5); return dot(y, dy) }
        _ = loss()
        let dx = Buf(zeros: r * d), dg = Buf(zeros: d), db = Buf(zeros: d)
        LayerNorm.backward(dx: dx.p, dgamma: dg.p, dbeta: db.p, dy: dy.p, x: x.p, mean: mean.p, rstd: rstd.p, gamma: g.p, rows: r, dim: d)
        fdCheck("dx", x: x, grad: dx, loss); fdCheck("dgamma", x: g, grad: dg, loss); fdCheck("dbeta", x: bt, grad: db, loss)
        // Normalised rows: mean 0, variance 1 before the affine part.
        let gg = Buf(zeros: d); for j in 0..<d { gg.p[j] = 1 }
        let zb = Buf(zeros: d)
        LayerNorm.forward(y.p, mean: nil, rstd: nil, x.p, gamma: gg.p, beta: zb.p, rows: r, dim: d, eps: 0)
        var s: Float = 0, q: Float = 0
        for j in 0..<d { s += y.p[j]; q += y.p[j] * y.p[j] }
        XCTAssertEqual(s / Float(d), 0, accuracy: 1e-5); XCTAssertEqual(q / Float(d), 1, accuracy: 1e-4)
    }

    /// LN(residual + Dropout(sublayer)) fused equals dropout, add and LayerNorm one by one,
    /// forward and backward, and its gradients pass finite differences.
    func testResidualLayerNormFusedEqualsTheSteps() {
        let r = 3, d = 37, n = r * d
        let a = Buf(n, seed: 40), b = Buf(n, seed: 41), gam = Buf(d, seed: 42), bet = Buf(d, seed: 43), dy = Buf(n, seed: 44)
        let mask = UnsafeMutablePointer<UInt8>.allocate(capacity: n); defer { mask.deallocate() }
        for i in 0..<n { mask[i] = i % 3 == 0 ? 0 : 1 }
        for useMask in [false, true] {
            let p: Float = useMask ? 0.25 : 0
            let m: UnsafePointer<UInt8>? = useMask ? UnsafePointer(mask) : nil
            // The steps.
            let dropped = Buf(zeros: n), sum1 = Buf(zeros: n), y1 = Buf(zeros: n), mean1 = Buf(zeros: r), rstd1 = Buf(zeros: r)
            if useMask { Dropout.apply(dropped.p, a.p, mask: mask, count: n, p: p) } else { dropped.p.update(from: a.p, count: n) }
            for i in 0..<n { sum1.p[i] = dropped.p[i] + b.p[i] }
            LayerNorm.forward(y1.p, mean: mean1.p, rstd: rstd1.p, sum1.p, gamma: gam.p, beta: bet.p, rows: r, dim: d, eps: 1e-12)
            let dSum = Buf(zeros: n), dg1 = Buf(zeros: d), db1 = Buf(zeros: d)
            LayerNorm.backward(dx: dSum.p, dgamma: dg1.p, dbeta: db1.p, dy: dy.p, x: sum1.p, mean: mean1.p, rstd: rstd1.p,
                               gamma: gam.p, rows: r, dim: d)
            let dA1 = Buf(zeros: n)
            if useMask { Dropout.backward(dA1.p, dSum.p, mask: mask, count: n, p: p) } else { dA1.p.update(from: dSum.p, count: n) }
            // Fused.
            let sum2 = Buf(zeros: n), y2 = Buf(zeros: n), mean2 = Buf(zeros: r), rstd2 = Buf(zeros: r)
            LayerNorm.residualForward(y2.p, sum: sum2.p, mean: mean2.p, rstd: rstd2.p, sublayer: a.p, mask: m, p: p, residual: b.p,
                                      gamma: gam.p, beta: bet.p, rows: r, dim: d, eps: 1e-12)
            let dB2 = Buf(zeros: n), dA2 = Buf(zeros: n), dg2 = Buf(zeros: d), db2 = Buf(zeros: d)
            LayerNorm.residualBackward(dResidual: dB2.p, dSublayer: dA2.p, mask: m, p: p, dgamma: dg2.p, dbeta: db2.p,
                                       dy: dy.p, sum: sum2.p, mean: mean2.p, rstd: rstd2.p, gamma: gam.p, rows: r, dim: d)
            for i in 0..<n {
                XCTAssertEqual(sum2.p[i], sum1.p[i], accuracy: 1e-6)
                XCTAssertEqual(y2.p[i], y1.p[i], accuracy: 1e-5)
                XCTAssertEqual(dB2.p[i], dSum.p[i], accuracy: 1e-5)
                XCTAssertEqual(dA2.p[i], dA1.p[i], accuracy: 1e-5)
            }
            for j in 0..<d { XCTAssertEqual(dg2.p[j], dg1.p[j], accuracy: 1e-5); XCTAssertEqual(db2.p[j], db1.p[j], accuracy: 1e-5) }
            // Finite differences of Σ dy·y with respect to the sublayer and the residual.
            let y = Buf(zeros: n), s = Buf(zeros: n)
            func loss() -> Double {
                LayerNorm.residualForward(y.p, sum: s.p, mean: nil, rstd: nil, sublayer: a.p, mask: m, p: p, residual: b.p,
                                          gamma: gam.p, beta: bet.p, rows: r, dim: d, eps: 1e-12)
                return dot(y, dy)
            }
            fdCheck("residual LN, sublayer", x: a, grad: dA2, loss)
            fdCheck("residual LN, residual", x: b, grad: dB2, loss)
        }
    }

    func testGELUAndReLU() {
        let n = 9
        let x = Buf(n, seed: 9, scale: 3), dy = Buf(n, seed: 10), y = Buf(zeros: n), dx = Buf(zeros: n)
        func lg() -> Double { GELU.forward(y.p, x.p, count: n); return dot(y, dy) }
        GELU.backward(dx.p, dy: dy.p, x: x.p, count: n)
        fdCheck("gelu", x: x, grad: dx, lg)
        // In place (dx == dy, the model's use; a loop of its own): the same values, on
        // lengths past the vector width.
        for m in [9, 64, 1001] {
            let xs = Buf(m, seed: 11, scale: 4), g = Buf(m, seed: 12), out = Buf(zeros: m)
            GELU.backward(out.p, dy: g.p, x: xs.p, count: m)
            GELU.backward(g.p, dy: g.p, x: xs.p, count: m)
            for i in 0..<m { XCTAssertEqual(g.p[i], out.p[i]) }
        }
        // Known values of the erf form.
        let v = Buf(zeros: 3); v.p[0] = 1; v.p[1] = -1; v.p[2] = 0
        GELU.forward(y.p, v.p, count: 3)
        XCTAssertEqual(y.p[0], 0.8413447, accuracy: 1e-6); XCTAssertEqual(y.p[1], -0.1586553, accuracy: 1e-6); XCTAssertEqual(y.p[2], 0)
        for i in 0..<n where abs(x.p[i]) < 0.05 { x.p[i] = 0.5 }   // away from the kink
        func lr() -> Double { ReLU.forward(y.p, x.p, count: n); return dot(y, dy) }
        ReLU.backward(dx.p, dy: dy.p, x: x.p, count: n)
        fdCheck("relu", x: x, grad: dx, lr)
    }

    func attention(masked: Bool, dropout: Bool) {
        let B = 2, H = 2, lq = 3, lk = 4, dh = 3, ld = H * dh
        let q = Buf(B * lq * ld, seed: 11), k = Buf(B * lk * ld, seed: 12), v = Buf(B * lk * ld, seed: 13)
        let dctx = Buf(B * lq * ld, seed: 14)
        let ctx = Buf(zeros: B * lq * ld)
        let s = AttentionShape(batch: B, heads: H, lq: lq, lk: lk, headDim: dh, ldq: ld, ldk: ld, ldv: ld, ldc: ld, scale: 0.57)
        let probs = Buf(zeros: s.probsCount)
        let mask = Buf(zeros: B * lk)
        if masked { mask.p[3] = -Float.greatestFiniteMagnitude; mask.p[lk + 2] = -Float.greatestFiniteMagnitude }
        let dm = UnsafeMutablePointer<UInt8>.allocate(capacity: s.probsCount); defer { dm.deallocate() }
        let ids: [Int64] = [3, 9]
        ids.withUnsafeBufferPointer { idp in
            Dropout.makeMask(dm, batch: B, perSample: H * lq * lk, p: 0.3, keys: DropoutKeys(seed: 1, epoch: 0, sampleIds: idp.baseAddress!), site: 5)
        }
        let scratch = Buf(zeros: 2 * lq * lk)
        func loss() -> Double {
            Attention.forward(ctx: ctx.p, probs: probs.p, q: q.p, k: k.p, v: v.p, keyMaskAdd: masked ? mask.p : nil, shape: s,
                              dropMask: dropout ? UnsafePointer(dm) : nil, dropScale: 1 / 0.7, scratch: scratch.p)
            return dot(ctx, dctx)
        }
        _ = loss()
        if masked {  // masked keys get no weight
            for b in 0..<B { for h in 0..<H { for r in 0..<lq {
                let row = probs.p + ((b * H + h) * lq + r) * lk
                XCTAssertEqual(row[b == 0 ? 3 : 2], 0)
                var sum: Float = 0; for j in 0..<lk { sum += row[j] }; XCTAssertEqual(sum, 1, accuracy: 1e-5)
            } } }
        }
        let dq = Buf(zeros: q.n), dk = Buf(zeros: k.n), dv = Buf(zeros: v.n)
        Attention.backward(dq: dq.p, dk: dk.p, dv: dv.p, dctx: dctx.p, probs: probs.p, q: q.p, k: k.p, v: v.p, shape: s,
                           ldDq: ld, ldDk: ld, ldDv: ld, dropMask: dropout ? UnsafePointer(dm) : nil, dropScale: 1 / 0.7, scratch: scratch.p)
        fdCheck("dq", x: q, grad: dq, loss); fdCheck("dk", x: k, grad: dk, loss); fdCheck("dv", x: v, grad: dv, loss)
    }
    func testAttention() { attention(masked: false, dropout: false) }
    func testAttentionMaskedWithDropout() { attention(masked: true, dropout: true) }

    func testPoolingGatherEmbedding() {
        let B = 2, L = 4, D = 3
        let x = Buf(B * L * D, seed: 15), dOut = Buf(B * D, seed: 16), out = Buf(zeros: B * D), dx = Buf(zeros: B * L * D)
        let m: [Int32] = [1, 1, 0, 0, 1, 1, 1, 0]
        m.withUnsafeBufferPointer { mp in
            for mask in [nil, mp.baseAddress] {
                func loss() -> Double { MeanPool.forward(out.p, x.p, mask: mask, batch: B, length: L, dim: D); return dot(out, dOut) }
                MeanPool.backward(dx.p, dOut: dOut.p, mask: mask, batch: B, length: L, dim: D)
                fdCheck("meanpool", x: x, grad: dx, loss)
            }
        }
        let pos: [Int32] = [2, 0]
        pos.withUnsafeBufferPointer { pp in
            func loss() -> Double { GatherRows.forward(out.p, x.p, positions: pp.baseAddress!, batch: B, length: L, dim: D); return dot(out, dOut) }
            GatherRows.backward(dx.p, dOut: dOut.p, positions: pp.baseAddress!, batch: B, length: L, dim: D)
            fdCheck("gather", x: x, grad: dx, loss)
        }
        // Embedding: ids repeat, so scatter-add must accumulate.
        let V = 5, ids: [Int32] = [1, 3, 1, 0, 4, 4, 2, 1], types: [Int32] = [0, 0, 1, 1, 0, 1, 0, 0]
        let word = Buf(V * D, seed: 17), posE = Buf(L * D, seed: 18), typ = Buf(2 * D, seed: 19)
        let eo = Buf(zeros: B * L * D), dEo = Buf(B * L * D, seed: 20)
        let dw = Buf(zeros: V * D), dp = Buf(zeros: L * D), dt = Buf(zeros: 2 * D)
        ids.withUnsafeBufferPointer { ip in types.withUnsafeBufferPointer { tp in
            func loss() -> Double {
                Embedding.forward(eo.p, ids: ip.baseAddress!, typeIds: tp.baseAddress!, word: word.p, position: posE.p, type: typ.p, batch: B, length: L, dim: D)
                return dot(eo, dEo)
            }
            Embedding.backward(dWord: dw.p, dPosition: dp.p, dType: dt.p, dOut: dEo.p, ids: ip.baseAddress!, typeIds: tp.baseAddress!, batch: B, length: L, dim: D)
            fdCheck("word", x: word, grad: dw, loss); fdCheck("position", x: posE, grad: dp, loss); fdCheck("type", x: typ, grad: dt, loss)
        } }
    }

    func testL1LossAndDropout() {
        let y = Buf(4, seed: 21), t = Buf(4, seed: 22), dy = Buf(zeros: 4)
        let loss = L1Loss.forward(y.p, t.p, batch: 4, normalizer: 8)
        var ref: Float = 0; for i in 0..<4 { ref += abs(y.p[i] - t.p[i]) }
        XCTAssertEqual(loss, ref / 8, accuracy: 1e-6)
        t.p[0] = y.p[0]
        L1Loss.backward(dy.p, y.p, t.p, batch: 4, normalizer: 8)
        XCTAssertEqual(dy.p[0], 0)           // sign(0) = 0 as PyTorch
        for i in 1..<4 { XCTAssertEqual(abs(dy.p[i]), 0.125) }
        // Dropout: rate close to p, kept values scaled by 1/(1-p), same mask for same sample id.
        let n = 20000
        let m1 = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * n), m2 = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { m1.deallocate(); m2.deallocate() }
        let a: [Int64] = [5, 6], bb: [Int64] = [6]
        a.withUnsafeBufferPointer { ap in Dropout.makeMask(m1, batch: 2, perSample: n, p: 0.3, keys: DropoutKeys(seed: 2, epoch: 1, sampleIds: ap.baseAddress!), site: 9) }
        bb.withUnsafeBufferPointer { bp in Dropout.makeMask(m2, batch: 1, perSample: n, p: 0.3, keys: DropoutKeys(seed: 2, epoch: 1, sampleIds: bp.baseAddress!), site: 9) }
        var kept = 0, same = true
        for i in 0..<n { kept += Int(m1[i]); if m1[n + i] != m2[i] { same = false } }
        XCTAssertTrue(same)
        XCTAssertEqual(Double(kept) / Double(n), 0.7, accuracy: 0.02)
        let x = Buf(n, seed: 23), o = Buf(zeros: n)
        Dropout.apply(o.p, x.p, mask: m1, count: n, p: 0.3)
        for i in 0..<100 { XCTAssertEqual(o.p[i], m1[i] != 0 ? x.p[i] / 0.7 : 0, accuracy: 1e-6) }
        // In place: the same values.
        Dropout.apply(x.p, x.p, mask: m1, count: n, p: 0.3)
        for i in 0..<n { XCTAssertEqual(x.p[i], o.p[i]) }
    }

    func testSgemmTransposes() {
        let m = 3, n = 4, k = 5
        for ta in [false, true] { for tb in [false, true] {
            let a = Buf(m * k, seed: 30), b = Buf(k * n, seed: 31), c = Buf(zeros: m * n)
            sgemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a.p, lda: ta ? m : k, b: b.p, ldb: tb ? k : n, c: c.p, ldc: n)
            for i in 0..<m { for j in 0..<n {
                var s: Float = 0
                for l in 0..<k { s += (ta ? a.p[l * m + i] : a.p[i * k + l]) * (tb ? b.p[j * k + l] : b.p[l * n + j]) }
                XCTAssertEqual(c.p[i * n + j], s, accuracy: 1e-5)
            } }
        } }
    }
}

final class DropoutSpanTests: XCTestCase {
    func testSpansEqualTheFullMask() {
        let n = 103
        let ids: [Int64] = [7, 8]
        let full = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * n), part = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { full.deallocate(); part.deallocate() }
        ids.withUnsafeBufferPointer { ip in
            let k = DropoutKeys(seed: 3, epoch: 4, sampleIds: ip.baseAddress!)
            Dropout.makeMask(full, batch: 2, perSample: n, p: 0.4, keys: k, site: 77)
            for (s, c) in [(0, n), (1, 5), (3, 17), (50, 53), (102, 1)] {
                Dropout.maskSpan(part, start: s, count: c, p: 0.4, keys: k, sample: 1, site: 77)
                for i in 0..<c { XCTAssertEqual(part[i], full[n + s + i], "start \(s) element \(i)") }
            }
        }
    }
}

final class FastMathTests: XCTestCase {
    func testExpAndErfAccuracy() {
        let n = 200_001
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n), y = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { x.deallocate(); y.deallocate() }
        for i in 0..<n { x[i] = -80 + 160 * Float(i) / Float(n - 1) }
        FastMath.exp(y, x, count: n)
        var worst = 0.0
        for i in 0..<n { let r = Foundation.exp(Double(x[i])); worst = max(worst, abs(Double(y[i]) - r) / r) }
        XCTAssertLessThan(worst, 4e-7, "exp relative error")
        for i in 0..<n { x[i] = -6 + 12 * Float(i) / Float(n - 1) }
        FastMath.erf(y, x, count: n - 3)   // a tail that is not a multiple of 8
        var worstErf = 0.0
        for i in 0..<(n - 3) { worstErf = max(worstErf, abs(Double(y[i]) - Foundation.erf(Double(x[i])))) }
        XCTAssertLessThan(worstErf, 2.5e-7, "erf absolute error")
        XCTAssertEqual(y[(n - 1) / 2], 0, accuracy: 1e-12)  // erf(0) = 0
    }

    func testGELUMatchesTheErfForm() {
        let n = 1001
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n), y = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { x.deallocate(); y.deallocate() }
        for i in 0..<n { x[i] = -10 + 20 * Float(i) / Float(n - 1) }
        GELU.forward(y, x, count: n)
        for i in 0..<n {
            let v = Double(x[i]), ref = 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))
            XCTAssertEqual(Double(y[i]), ref, accuracy: 2e-6 * max(1, abs(v)), "x = \(v)")
        }
    }
}

final class SingleQueryAttentionTests: XCTestCase {
    /// One query row (the [MASK]-row path) takes the gemv/ger route: same gradients.
    func testOneQueryRow() {
        let B = 3, lk = 7, dh = 4, ld = 2 * dh
        let q = Buf(B * dh, seed: 41), kv = Buf(B * lk * ld, seed: 42), dctx = Buf(B * dh, seed: 43)
        let ctx = Buf(zeros: B * dh)
        let s = AttentionShape(batch: B, heads: 1, lq: 1, lk: lk, headDim: dh, ldq: dh, ldk: ld, ldv: ld, ldc: dh, scale: 0.5)
        let probs = Buf(zeros: s.probsCount), scratch = Buf(zeros: 2 * lk)
        func loss() -> Double {
            Attention.forward(ctx: ctx.p, probs: probs.p, q: q.p, k: kv.p, v: kv.p + dh, keyMaskAdd: nil, shape: s)
            return dot(ctx, dctx)
        }
        _ = loss()
        let dq = Buf(zeros: q.n), dkv = Buf(kv.n, seed: 44)   // accumulate onto existing values
        let before = Array(UnsafeBufferPointer(start: dkv.p, count: dkv.n))
        Attention.backward(dq: dq.p, dk: dkv.p, dv: dkv.p + dh, dctx: dctx.p, probs: probs.p, q: q.p, k: kv.p, v: kv.p + dh,
                           shape: s, ldDq: dh, ldDk: ld, ldDv: ld, accumulateKV: true, scratch: scratch.p)
        for i in 0..<dkv.n { dkv.p[i] -= before[i] }
        fdCheck("dq", x: q, grad: dq, loss); fdCheck("dkv", x: kv, grad: dkv, loss)
    }
}
