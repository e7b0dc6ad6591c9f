// Finite-difference checks of the whole network's backward, tensor by tensor: for a
// random direction d inside one tensor, (L(p + εd) − L(p − εd)) / 2ε must equal g·d.
// Dropout is on in some cases: masks are keyed, so the function stays deterministic.
import XCTest
import SKESLKernels
import SKESLModel

final class FiniteDifferenceTests: XCTestCase {
    func check(_ c: ModelConfig, file: StaticString = #filePath, line: UInt = #line) throws {
        let net = try SKESLNetwork(config: c, seed: 3)
        randomise(net, scale: 0.3, seed: 11)
        // Keep the head's ReLU units firmly on or off (no kink within the step), both kinds present.
        let w1 = net.parameter("head.fc1.weight")!, b1 = net.parameter("head.fc1.bias")!
        let hh = c.head.hidden, hd = c.bert.hiddenSize
        for i in 0..<(hh * hd) { w1[i] *= 0.1 }
        for j in 0..<hh { b1[j] = j % 3 == 2 ? -3 : 3 }
        // Targets one unit away from the predictions: the L1 kink is never crossed, and the
        // loss stays small so that float32 resolves its differences.
        let st = randomBatch(c)
        let b = st.batch()
        try net.forward(b, training: true, needsBackward: false, seed: 5, epoch: 1)
        for i in 0..<b.size { st.targets[i] = net.predictions[i] + (i % 2 == 0 ? 1 : -1) }
        net.zeroGradients()
        try net.forward(b, training: true, seed: 5, epoch: 1)
        net.backward()
        var checked = 0
        for e in net.layout.entries where e.offset >= net.layout.trainableStart {
            guard let g = net.gradient(e.name) else { XCTFail("no gradient for \(e.name)"); continue }
            let dir = UnsafeMutablePointer<Float>.allocate(capacity: e.count); defer { dir.deallocate() }
            KeyedRandom(seed: 9, stream: "dir:" + e.name).fillUniform(dir, e.count, lo: -1, hi: 1)
            // The pad row takes no gradient by design (PyTorch's padding_idx): leave it out.
            if e.name == "bert.embeddings.word_embeddings.weight" { dir.update(repeating: 0, count: e.shape[1]) }
            var analytic: Double = 0
            for i in 0..<e.count { analytic += Double(g[i]) * Double(dir[i]) }
            let p = net.params + e.offset
            let saved = Array(UnsafeBufferPointer(start: p, count: e.count))
            let eps: Float = 2e-3
            for i in 0..<e.count { p[i] = saved[i] + eps * dir[i] }
            let lp = try net.forward(b, training: true, needsBackward: false, seed: 5, epoch: 1)
            for i in 0..<e.count { p[i] = saved[i] - eps * dir[i] }
            let lm = try net.forward(b, training: true, needsBackward: false, seed: 5, epoch: 1)
            for i in 0..<e.count { p[i] = saved[i] }
            let l0 = try net.forward(b, training: true, needsBackward: false, seed: 5, epoch: 1)
            let numeric = (Double(lp) - Double(lm)) / (2 * Double(eps))
            let right = (Double(lp) - Double(l0)) / Double(eps), left = (Double(l0) - Double(lm)) / Double(eps)
            let tol = 2e-2 * max(abs(numeric), abs(analytic)) + 2e-3
            if abs(right - left) > 4 * tol {
                // A ReLU kink at this very point: the gradient is one of the one-sided slopes.
                let ok = abs(analytic - left) < 4 * tol || abs(analytic - right) < 4 * tol
                XCTAssertTrue(ok, "\(e.name): analytic \(analytic) vs one-sided \(left) / \(right)", file: file, line: line)
            } else {
                XCTAssertEqual(analytic, numeric, accuracy: tol, "\(e.name): analytic \(analytic) vs numeric \(numeric)", file: file, line: line)
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
    }

    func testPretrainFrozenShared() throws { try check(smallConfig(task: .pretrain, freeze: true, shared: true)) }
    func testPretrainUnfrozenIndependentMaskedPaddingWithDropout() throws {
        try check(smallConfig(task: .pretrain, freeze: false, shared: false, layers: 3, maskPadding: true, dropout: 0.2))
    }
    func testFinetuneSharedWithDropout() throws { try check(smallConfig(task: .finetune, freeze: false, shared: true, dropout: 0.3)) }
    func testFinetuneMaskedPool() throws { try check(smallConfig(task: .finetune, freeze: false, maskPadding: true, maskedPool: true)) }
    func testTextOnly() throws { try check(smallConfig(task: .textOnly, freeze: false)) }

    func testFrozenBertHasNoGradientStorage() throws {
        let c = smallConfig(task: .pretrain, freeze: true)
        let net = try SKESLNetwork(config: c)
        XCTAssertNil(net.gradient("bert.embeddings.word_embeddings.weight"))
        XCTAssertNotNil(net.gradient("head.fc1.weight"))
        let bertCount = net.layout.entries.filter { $0.group == .bert }.reduce(0) { $0 + $1.count }
        XCTAssertEqual(net.layout.trainableCount, net.layout.count - bertCount)
    }

    func testDropoutMasksDependOnSampleNotBatchPosition() throws {
        // The same sample gives the same prediction alone or inside a batch (dropout on).
        let c = smallConfig(task: .finetune, freeze: false, dropout: 0.3)
        let net = try SKESLNetwork(config: c, seed: 1)
        let st = randomBatch(c, B: 3)
        try net.forward(st.batch(), training: true, seed: 42, epoch: 2)
        let all = Array(UnsafeBufferPointer(start: net.predictions, count: 3))
        try net.forward(st.batch(start: 2, count: 1), training: true, seed: 42, epoch: 2)
        XCTAssertEqual(net.predictions[0], all[2], accuracy: 1e-5)
        // Another epoch draws other masks.
        try net.forward(st.batch(start: 2, count: 1), training: true, seed: 42, epoch: 3)
        XCTAssertNotEqual(net.predictions[0], all[2])
    }

    func testBadBatchIsAClearError() throws {
        let c = smallConfig()
        let net = try SKESLNetwork(config: c)
        let st = randomBatch(c)
        st.inputIds[5] = 1000
        XCTAssertThrowsError(try net.forward(st.batch(), training: false)) { e in
            XCTAssertTrue("\(e)".contains("outside the vocabulary"), "\(e)")
            XCTAssertTrue("\(e)".contains("sample 100"), "\(e)")
        }
    }
}

final class BackwardHookTests: XCTestCase {
    /// The ready spans cover the gradient buffer exactly once, last parameters first, and
    /// each span is final when reported (later backward work does not change it).
    func testReadySpansCoverTheBufferOnceFromTheEnd() throws {
        for c in [smallConfig(task: .finetune, freeze: false), smallConfig(task: .pretrain, freeze: true), smallConfig(task: .textOnly, freeze: false)] {
            let net = try SKESLNetwork(config: c, seed: 1)
            let st = randomBatch(c)
            net.zeroGradients()
            try net.forward(st.batch(), training: true)
            var spans: [(Range<Int>, [Float])] = []
            net.backward { r in spans.append((r, Array(UnsafeBufferPointer(start: net.grads + r.lowerBound, count: r.count)))) }
            XCTAssertEqual(spans.first?.0.upperBound, net.layout.trainableCount)
            XCTAssertEqual(spans.last?.0.lowerBound, 0)
            for i in 1..<spans.count { XCTAssertEqual(spans[i].0.upperBound, spans[i - 1].0.lowerBound) }
            for (r, snap) in spans {
                XCTAssertEqual(snap, Array(UnsafeBufferPointer(start: net.grads + r.lowerBound, count: r.count)))
            }
            if !c.freezeBert && c.task != .textOnly { XCTAssertEqual(spans.count, 3 + c.bert.numHiddenLayers) }
        }
    }
}
