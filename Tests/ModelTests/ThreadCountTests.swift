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

    func testPretrainingWithFrozenBertAndDropout() throws {
        try check(smallConfig(task: .pretrain, freeze: true, shared: true, dropout: 0.3))
    }

    func testFinetuningThroughBertWithDropout() throws {
        try check(smallConfig(task: .finetune, freeze: false, shared: false, maskPadding: true, dropout: 0.3))
    }
}
