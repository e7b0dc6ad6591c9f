// The worker team (train.threads for the step's own loops): every chunk runs once, results are
// bitwise those of one thread for every kernel that uses it, loops inside loops or from two
// threads at once run inline, and thousands of loops on a loaded machine neither hang nor
// lose a chunk.
import Foundation
import Synchronization
import XCTest
import SKESLKernels
import TestSupport

final class WorkerTeamTests: XCTestCase {
    private let team = WorkerTeam.shared
    override func tearDown() { team.setThreads(1); super.tearDown() }

    func testChunksCoverTheRangeOnceInPartOrder() {
        team.setThreads(3, grain: 1)
        for count in [0, 1, 2, 3, 7, 100] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1)); defer { hits.deallocate() }
            hits.initialize(repeating: 0, count: max(count, 1))
            var starts = [Int](repeating: -1, count: 3)
            starts.withUnsafeMutableBufferPointer { st in
                team.forEachChunk(count) { r, part in
                    st[part] = r.lowerBound
                    for i in r { hits[i] += 1 }
                }
            }
            XCTAssertEqual((0..<count).map { hits[$0] }, [Int](repeating: 1, count: count), "count \(count)")
            let used = starts.filter { $0 >= 0 }
            XCTAssertEqual(used, used.sorted(), "part i holds the i-th chunk (count \(count))")
            XCTAssertEqual(used.count, min(3, max(count, 1)), "one chunk per thread, at most one per item (count \(count))")
        }
        // The grain keeps small loops on the caller: 3 items of 4 elements under a grain of 16.
        team.setThreads(3, grain: 16)
        var parts = Set<Int>()
        team.forEachChunk(3, itemSize: 4) { _, part in parts.insert(part) }
        XCTAssertEqual(parts, [0])
    }

    func testLoopsInsideLoopsAndFromTwoThreadsRunInline() {
        team.setThreads(2, grain: 1)
        let innerParts = Mutex<[Int]>([])
        team.forEachChunk(2) { _, _ in
            var local: [Int] = []
            team.forEachChunk(10) { r, part in local.append(part); XCTAssertEqual(r, 0..<10) }
            innerParts.withLock { $0 += local }
        }
        XCTAssertEqual(innerParts.withLock { $0 }, [0, 0], "a loop inside a chunk runs on that chunk's thread")

        // Two callers at once: whichever finds the team busy computes inline; both are right.
        let n = 50_000
        let a = Buf(zeros: n), b = Buf(zeros: n)
        let group = DispatchGroup()
        for (buf, k) in [(a, Float(1)), (b, Float(2))] {
            group.enter()
            Thread {
                for _ in 0..<200 { self.team.forEachChunk(n) { r, _ in for i in r { buf.p[i] += k } } }
                group.leave()
            }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success, "two callers finished")
        XCTAssertTrue((0..<n).allSatisfy { a.p[$0] == 200 && b.p[$0] == 400 })
    }

    func testManyLoopsOnALoadedMachineLoseNothing() {
        let busy = BusyLoad()
        defer { busy.stop() }
        team.setThreads(4, grain: 1)   // more threads than this machine's cores, all busy
        let n = 257
        let x = Buf(zeros: n)
        let done = DispatchSemaphore(value: 0)
        Thread {
            for _ in 0..<5_000 { self.team.forEachChunk(n) { r, _ in for i in r { x.p[i] += 1 } } }
            done.signal()
        }.start()
        XCTAssertEqual(done.wait(timeout: .now() + 300), .success, "5,000 loops ended (no lost wake-up)")
        XCTAssertTrue((0..<n).allSatisfy { x.p[$0] == 5_000 })
    }

    /// Runs `compute` with one thread, then with 3 (every loop split), and compares the bits.
    private func sameBits(_ name: String, _ outputs: [Buf], _ compute: () -> Void) {
        team.setThreads(1)
        for o in outputs { o.zero() }
        compute()
        let one = outputs.map { Array(UnsafeBufferPointer(start: $0.p, count: $0.n)) }
        team.setThreads(3, grain: 1)
        for o in outputs { o.zero() }
        compute()
        for (k, o) in outputs.enumerated() {
            let three = Array(UnsafeBufferPointer(start: o.p, count: o.n))
            XCTAssertEqual(three.map(\.bitPattern), one[k].map(\.bitPattern), "\(name): output \(k) differs on 3 threads")
            XCTAssertTrue(three.contains { $0 != 0 }, "\(name): output \(k) was computed")
        }
        team.setThreads(1)
    }

    func testKernelsGiveTheSameBitsOnAnyThreadCount() {
        let rows = 7, dim = 10
        let x = Buf(rows * dim, seed: 1), res = Buf(rows * dim, seed: 2), g = Buf(dim, seed: 3), bt = Buf(dim, seed: 4)
        let y = Buf(zeros: rows * dim), sum = Buf(zeros: rows * dim), mean = Buf(zeros: rows), rstd = Buf(zeros: rows)
        let mask = UnsafeMutablePointer<UInt8>.allocate(capacity: rows * dim); defer { mask.deallocate() }
        let ids: [Int64] = [5, 8, 13, 21, 34, 55, 89]
        let maskBuf = Buf(zeros: rows * dim)
        ids.withUnsafeBufferPointer { idp in
            let keys = DropoutKeys(seed: 4, epoch: 2, sampleIds: idp.baseAddress!)
            sameBits("Dropout.makeMask", [maskBuf]) {
                Dropout.makeMask(mask, batch: rows, perSample: dim, p: 0.4, keys: keys, site: 9)
                for i in 0..<(rows * dim) { maskBuf.p[i] = Float(mask[i]) + 1 }
            }
        }
        sameBits("Dropout.apply", [y]) { Dropout.apply(y.p, x.p, mask: mask, count: rows * dim, p: 0.4) }
        sameBits("LayerNorm.forward", [y, mean, rstd]) {
            LayerNorm.forward(y.p, mean: mean.p, rstd: rstd.p, x.p, gamma: g.p, beta: bt.p, rows: rows, dim: dim, eps: 1e-5)
        }
        sameBits("LayerNorm.residualForward", [y, sum, mean, rstd]) {
            LayerNorm.residualForward(y.p, sum: sum.p, mean: mean.p, rstd: rstd.p, sublayer: x.p, mask: mask, p: 0.4,
                                      residual: res.p, gamma: g.p, beta: bt.p, rows: rows, dim: dim, eps: 1e-5)
        }
        let pre = Buf(zeros: rows * dim)
        sameBits("GELU.biasForward", [y, pre]) {
            pre.p.update(from: x.p, count: rows * dim)
            GELU.biasForward(y.p, pre: pre.p, bias: bt.p, rows: rows, dim: dim)
        }
        let dyb = Buf(rows * dim, seed: 6), dA = Buf(zeros: rows * dim), dB = Buf(zeros: rows * dim)
        let dg = Buf(zeros: dim), db = Buf(zeros: dim)
        sameBits("LayerNorm.backward", [dA, dg, db]) {
            LayerNorm.forward(y.p, mean: mean.p, rstd: rstd.p, x.p, gamma: g.p, beta: bt.p, rows: rows, dim: dim, eps: 1e-5)
            LayerNorm.backward(dx: dA.p, dgamma: dg.p, dbeta: db.p, dy: dyb.p, x: x.p, mean: mean.p, rstd: rstd.p,
                               gamma: g.p, rows: rows, dim: dim)
            LayerNorm.backward(dx: dA.p, dgamma: dg.p, dbeta: db.p, dy: res.p, x: x.p, mean: mean.p, rstd: rstd.p,
                               gamma: g.p, rows: rows, dim: dim, accumulate: true)
        }
        sameBits("LayerNorm.residualBackward", [dA, dB, dg, db]) {
            LayerNorm.residualForward(y.p, sum: sum.p, mean: mean.p, rstd: rstd.p, sublayer: x.p, mask: mask, p: 0.4,
                                      residual: res.p, gamma: g.p, beta: bt.p, rows: rows, dim: dim, eps: 1e-5)
            LayerNorm.residualBackward(dResidual: dA.p, dSublayer: dB.p, mask: mask, p: 0.4, dgamma: dg.p, dbeta: db.p,
                                       dy: dyb.p, sum: sum.p, mean: mean.p, rstd: rstd.p, gamma: g.p, rows: rows, dim: dim)
        }
        let w = Buf(dim * dim, seed: 7), dw = Buf(zeros: dim * dim)
        sameBits("Linear.backward", [dA, dw, db]) {
            Linear.backward(dx: dA.p, dw: dw.p, db: db.p, dy: dyb.p, x: x.p, weight: w.p, rows: rows, inFeatures: dim, outFeatures: dim)
            Linear.backward(dx: dA.p, dw: dw.p, db: db.p, dy: res.p, x: x.p, weight: w.p, rows: rows, inFeatures: dim,
                            outFeatures: dim, accumulateDx: true)
        }
        sameBits("GELU.backward (in place)", [y]) {
            y.p.update(from: res.p, count: rows * dim)
            GELU.backward(y.p, dy: y.p, x: x.p, count: rows * dim)
        }

        // Attention with a dropout mask, forward and backward, 2 samples x 3 heads.
        let B = 2, H = 3, lq = 4, lk = 5, dh = 3, ld = H * dh
        let s = AttentionShape(batch: B, heads: H, lq: lq, lk: lk, headDim: dh, ldq: ld, ldk: ld, ldv: ld, ldc: ld, scale: 0.5)
        let q = Buf(B * lq * ld, seed: 11), k = Buf(B * lk * ld, seed: 12), v = Buf(B * lk * ld, seed: 13)
        let dctx = Buf(B * lq * ld, seed: 14), ctx = Buf(zeros: B * lq * ld), probs = Buf(zeros: s.probsCount)
        let dm = UnsafeMutablePointer<UInt8>.allocate(capacity: s.probsCount); defer { dm.deallocate() }
        for i in 0..<s.probsCount { dm[i] = i % 5 == 0 ? 0 : 1 }
        let scratch = Buf(zeros: 2 * s.lq * s.lk * 3)   // 2 x Attention.scratchCount on 3 threads
        let dq = Buf(zeros: q.n), dk = Buf(zeros: k.n), dv = Buf(zeros: v.n)
        sameBits("Attention", [ctx, probs, dq, dk, dv]) {
            Attention.forward(ctx: ctx.p, probs: probs.p, q: q.p, k: k.p, v: v.p, keyMaskAdd: nil, shape: s,
                              dropMask: dm, dropScale: 1.25, scratch: scratch.p)
            Attention.backward(dq: dq.p, dk: dk.p, dv: dv.p, dctx: dctx.p, probs: probs.p, q: q.p, k: k.p, v: v.p, shape: s,
                               ldDq: ld, ldDk: ld, ldDv: ld, dropMask: dm, dropScale: 1.25, scratch: scratch.p)
        }
    }
}
