// TrainStep in-process, without the binary: gradient accumulation over micro-batches gives
// the step of the whole batch, the agreement carries the loss, the non-finite samples and
// the stop requests, and a non-finite step is caught before any update.
import Foundation
import SKESLReporting
import SKESLKernels
import SKESLModel
@testable import SKESLTraining
import XCTest

final class TrainStepTests: XCTestCase {
    func config() -> ModelConfig {
        var c = ModelConfig()
        c.bert.vocabSize = 64; c.bert.hiddenSize = 32; c.bert.numHiddenLayers = 2; c.bert.numAttentionHeads = 4
        c.bert.intermediateSize = 64; c.bert.maxPositionEmbeddings = 40; c.bert.typeVocabSize = 2
        c.bert.hiddenDropoutProb = 0.1; c.bert.attentionProbsDropoutProb = 0.1
        c.crossmodal.layers = 2; c.crossmodal.attentionDim = 16; c.crossmodal.audioDim = 7; c.crossmodal.videoDim = 9
        c.crossmodal.dropout = 0.1; c.head.hidden = 8; c.head.dropout = 0.1
        c.task = .finetune; c.freezeBert = false
        return c
    }

    /// Samples `range` of a fixed random set of 8 (ids 100...107), as one batch.
    func batch(_ c: ModelConfig, _ range: Range<Int>) -> BatchStorage {
        let L = 10, Ta = 12, Tv = 6, B = range.count
        let s = BatchStorage(size: B, textLength: L, audioFrames: Ta, audioDim: c.crossmodal.audioDim,
                             videoFrames: Tv, videoDim: c.crossmodal.videoDim)
        for (j, b) in range.enumerated() {
            let r = KeyedRandom(seed: 5, stream: "sample-\(b)")
            var k = 0
            func next() -> Float { k += 1; return r.uniform(k) }
            let len = 4 + b % 5
            for t in 0..<L {
                s.inputIds[j * L + t] = t < len ? Int32(1 + Int(next() * 60)) : 0
                s.attentionMask[j * L + t] = t < len ? 1 : 0
                s.tokenTypeIds[j * L + t] = 0
            }
            s.maskPositions[j] = 1
            s.audioLengths[j] = Int32(Ta - b % 4); s.videoLengths[j] = Int32(Tv - b % 3)
            for i in 0..<(Ta * c.crossmodal.audioDim) { s.audio[j * Ta * c.crossmodal.audioDim + i] = 2 * next() - 1 }
            for i in 0..<(Tv * c.crossmodal.videoDim) { s.video[j * Tv * c.crossmodal.videoDim + i] = 2 * next() - 1 }
            s.targets[j] = 6 * next() - 3
            s.sampleIds[j] = Int64(100 + b)
        }
        return s
    }

    func makeStep(_ c: ModelConfig) throws -> TrainStep {
        let net = try SKESLNetwork(config: c, seed: 3)
        var oc = OptimizerConfig()
        oc.lr = 1e-3
        return TrainStep(net: net, optimizer: Optimizer(config: oc, layout: net.layout), seed: 9)
    }

    func params(_ s: TrainStep) -> [Float] { Array(UnsafeBufferPointer(start: s.net.params, count: s.net.layout.count)) }

    func testMicroBatchesAccumulateToTheWholeBatchStep() throws {
        let c = config()
        let whole = try makeStep(c), split = try makeStep(c)
        XCTAssertEqual(params(whole), params(split))
        let all = batch(c, 0..<8), first = batch(c, 0..<3), second = batch(c, 3..<8)
        for step in 1...3 {
            whole.begin(step: step)
            try whole.microBatch(all.batch(), globalSamples: 8, epoch: step, last: true)
            let a = try whole.agree(stop: .none, globalSamples: 8)
            try whole.update { _, base, _ in base }

            split.begin(step: step)
            try split.microBatch(first.batch(), globalSamples: 8, epoch: step, last: false)
            try split.emptyMicroBatch(last: false)
            try split.microBatch(second.batch(), globalSamples: 8, epoch: step, last: true)
            let b = try split.agree(stop: .none, globalSamples: 8)
            try split.update { _, base, _ in base }
            // Dropout masks are keyed by sample id, so the halves see the whole batch's masks.
            XCTAssertEqual(a.loss, b.loss, accuracy: 1e-6 * max(1, abs(a.loss)), "step \(step): loss")
        }
        let p = params(whole), q = params(split)
        var worst: Float = 0, moved: Float = 0
        let start = try makeStep(c)
        let p0 = params(start)
        for i in 0..<p.count { worst = max(worst, abs(p[i] - q[i])); moved = max(moved, abs(p[i] - p0[i])) }
        XCTAssertGreaterThan(moved, 1e-3, "the steps changed the parameters")
        XCTAssertLessThan(worst, 1e-5, "accumulated micro-batches give the whole batch's update")
    }

    func testAgreementCarriesTheLossAndTheStopRequests() throws {
        let c = config()
        let s = try makeStep(c)
        let b = batch(c, 0..<4)
        s.begin(step: 1)
        try s.microBatch(b.batch(), globalSamples: 4, epoch: 0, last: true)
        s.noteSkipped(2)
        // The loss is the mean L1 error of the step's predictions.
        var l1 = 0.0
        for i in 0..<4 { l1 += Double(abs(s.net.predictions[i] - b.targets[i])) }
        let a = try s.agree(stop: .none, globalSamples: 4)
        XCTAssertEqual(a.loss, l1 / 4, accuracy: 1e-5)
        XCTAssertEqual(a.skipped, 2)
        XCTAssertTrue(a.isFinite)
        XCTAssertFalse(a.stopAfterStep || a.stopNow)
        let end = try s.agree(stop: .endOfStep, globalSamples: 4)
        XCTAssertTrue(end.stopAfterStep); XCTAssertFalse(end.stopNow)
        let now = try s.agree(stop: .now, globalSamples: 4)
        XCTAssertTrue(now.stopAfterStep && now.stopNow)
    }

    func testNonFiniteSamplesAreNamedBeforeAnyUpdate() throws {
        let c = config()
        let s = try makeStep(c)
        let b = batch(c, 0..<4)
        b.audio[2 * 12 * c.crossmodal.audioDim + 5] = .nan   // sample id 102
        let before = params(s)
        s.begin(step: 1)
        try s.microBatch(b.batch(), globalSamples: 4, epoch: 0, last: true)
        let a = try s.agree(stop: .none, globalSamples: 4)
        XCTAssertFalse(a.isFinite)
        XCTAssertEqual(a.localNonFinite, [102])
        XCTAssertEqual(a.nonFiniteSamples, 1)
        XCTAssertEqual(params(s), before, "forward and backward alone change no parameter")
        // A fresh step forgets the last one's sums.
        let good = batch(c, 0..<4)
        s.begin(step: 1)
        try s.microBatch(good.batch(), globalSamples: 4, epoch: 0, last: true)
        XCTAssertTrue(try s.agree(stop: .none, globalSamples: 4).isFinite)
    }
}
