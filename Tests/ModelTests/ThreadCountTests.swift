// train.threads runs the step's own loops on the worker team: the whole network's forward,
// loss, predictions and gradients must be bitwise those of one thread (each loop splits into
// chunks computed exactly as on one thread), with dropout on, for pretraining with frozen
// BERT (the [MASK]-row path) and fine-tuning through BERT's backward.
import XCTest
import SKESLKernels
import SKESLModel

final class ThreadCountTests: XCTestCase {
    override func tearDown() { WorkerTeam.shared.setThreads(1); super.tearDown() }

    private func run(_ c: ModelConfig, threads: Int) throws -> (loss: Float, predictions: [Float], grads: [Float]) {
        WorkerTeam.shared.setThreads(threads, grain: 1)   // grain 1: every loop of these small shapes splits
        defer { WorkerTeam.shared.setThreads(1) }
        let net = try SKESLNetwork(config: c, seed: 3)
        randomise(net, scale: 0.3, seed: 11)
        let st = randomBatch(c, B: 4)
        net.zeroGradients()
        let loss = try net.forward(st.batch(), training: true, seed: 5, epoch: 2)
        net.backward()
        let n = net.layout.trainableCount
        return (loss, Array(UnsafeBufferPointer(start: net.predictions, count: 4)),
                Array(UnsafeBufferPointer(start: net.grads, count: n)))
    }

    private func check(_ c: ModelConfig, file: StaticString = #filePath, line: UInt = #line) throws {
        let one = try run(c, threads: 1), three = try run(c, threads: 3)
        XCTAssertEqual(three.loss.bitPattern, one.loss.bitPattern, "loss", file: file, line: line)
        XCTAssertEqual(three.predictions.map(\.bitPattern), one.predictions.map(\.bitPattern), "predictions", file: file, line: line)
        XCTAssertEqual(three.grads.count, one.grads.count, file: file, line: line)
        let differing = zip(three.grads, one.grads).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 0, "gradient elements that differ on 3 threads", file: file, line: line)
        XCTAssertTrue(one.grads.contains { $0 != 0 }, file: file, line: line)
    }

    /// Three optimiser steps of each kind on 3 threads give the one-thread parameters and moments.
    func testOptimizerUpdatesGiveTheSameBits() throws {
        for kind in [OptimizerKind.adam, .adamw, .sgd] {
            var oc = OptimizerConfig()
            oc.kind = kind; oc.lr = 1e-2; oc.weightDecay = 0.01
            if kind == .sgd { oc.momentum = 0.9; oc.nesterov = true }
            let sizes = [37, 11, 52]
            let n = sizes.reduce(0, +)
            func steps(_ threads: Int) -> [UInt32] {
                WorkerTeam.shared.setThreads(threads, grain: 1)
                defer { WorkerTeam.shared.setThreads(1) }
                let p = UnsafeMutablePointer<Float>.allocate(capacity: n), g = UnsafeMutablePointer<Float>.allocate(capacity: n)
                defer { p.deallocate(); g.deallocate() }
                KeyedRandom(seed: 1, stream: "p").fillUniform(p, n, lo: -1, hi: 1)
                let o = Optimizer(config: oc, segments: zip(ParameterGroup.allCases, sizes).map { (group: $0, count: $1) })
                for s in 1...3 {
                    KeyedRandom(seed: UInt64(s), stream: "g").fillUniform(g, n, lo: -1, hi: 1)
                    o.update(params: p, grads: g) { $0 == .bert ? 5e-3 : 1e-2 }
                }
                return (0..<n).map { p[$0].bitPattern } + (0..<n).map { o.m[$0].bitPattern } + (0..<n).map { o.v[$0].bitPattern }
            }
            XCTAssertEqual(steps(3), steps(1), "\(kind)")
        }
    }

    func testPretrainingWithFrozenBertAndDropout() throws {
        try check(smallConfig(task: .pretrain, freeze: true, shared: true, dropout: 0.3))
    }

    func testFinetuningThroughBertWithDropout() throws {
        try check(smallConfig(task: .finetune, freeze: false, shared: false, maskPadding: true, dropout: 0.3))
    }
}
