// `skesl bench model`: the training step at reference shapes, timed, with the
// machine's own sgemm rate measured in the same run (the fraction of it reached),
// and optionally the PyTorch peer run by scripts/bench_torch.py with the same threads.
import Foundation
import SKESLKernels
import SKESLModel

public struct ModelBenchmark {
    public var task: ModelTask = .pretrain
    public var batch = 32, textLength = 39, audioFrames = 400, videoFrames = 55
    public var steps = 5, warmup = 1
    public var threads = 1
    public var bert = BertConfig.base
    public init() {}

    /// Reference FLOPs of one sample's step (the work the reference computes), by the
    /// usual 2·m·n·k count for products; element-wise work is not counted.
    public func usefulFLOPs(config c: ModelConfig) -> (bertForward: Double, encoderFwdBwd: Double, bertBackward: Double) {
        let L = Double(textLength), H = Double(c.bert.hiddenSize), I = Double(c.bert.intermediateSize)
        let layers = Double(c.bert.numHiddenLayers)
        let bertLayer = 2 * L * H * 3 * H + 2 * 2 * L * L * H + 2 * L * H * H + 2 * 2 * L * H * I
        let bertFwd = layers * bertLayer
        var enc = 0.0
        if c.task != .textOnly {
            let e = Double(c.crossmodal.attentionDim), nl = Double(c.crossmodal.layers)
            let ta = Double(audioFrames), tv = Double(videoFrames)
            let da = Double(c.crossmodal.audioDim), dv = Double(c.crossmodal.videoDim)
            let kvSets = c.crossmodal.shared ? 1.0 : nl
            let kvF = kvSets * (2 * ta * da * 2 * e + 2 * tv * dv * 2 * e)
            let perLayer = (2 * L * H * e + 2 * 2 * L * ta * e + 2 * L * e * H) + (2 * L * H * e + 2 * 2 * L * tv * e + 2 * L * e * H) + 2 * L * H * H
            let fwd = kvF + nl * perLayer
            enc = fwd * 3  // backward ≈ twice the forward
        }
        let head = 2 * H * Double(c.head.hidden) * 3
        return (bertFwd, enc + head, c.freezeBert ? 0 : 2 * bertFwd)
    }

    public func modelConfig() -> ModelConfig {
        var c = ModelConfig()
        c.bert = bert
        c.task = task
        c.freezeBert = task == .pretrain
        return c
    }

    /// This machine's sgemm rate at a BERT-base shape, GFLOP/s.
    public static func sgemmRate(m: Int = 1248, n: Int = 3072, k: Int = 768, seconds: Double = 1.0) -> Double {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        KeyedRandom(seed: 1, stream: "a").fillUniform(a, m * k, lo: -1, hi: 1)
        KeyedRandom(seed: 1, stream: "b").fillUniform(b, k * n, lo: -1, hi: 1)
        sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: c, ldc: n)
        var reps = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        var el = 0.0
        repeat {
            sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: c, ldc: n)
            reps += 1
            el = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        } while el < seconds
        return 2 * Double(m * n * k) * Double(reps) / el / 1e9
    }

    public struct Result: Codable {
        public var task: String, batch: Int, threads: Int, steps: Int
        public var msPerStep: Double, samplesPerSecond: Double, usefulGFLOPs: Double, sgemmGFLOPs: Double
        public var fractionOfSgemm: Double { usefulGFLOPs / sgemmGFLOPs }
    }

    /// Times `steps` optimiser steps (forward, backward, Adam) on random inputs.
    public func run(log: (String) -> Void = { print($0) }) throws -> Result {
        setBLASThreads(threads)
        let c = modelConfig()
        let net = try SKESLNetwork(config: c, seed: 1)
        var oc = OptimizerConfig()
        oc.lr = 1e-4
        if task == .finetune { oc.groupLR = ["bert": 5e-6, "crossmodal": 5e-6, "head": 1e-4] }
        let opt = Optimizer(config: oc, layout: net.layout)
        let st = BatchStorage(size: batch, textLength: textLength, audioFrames: audioFrames, audioDim: c.crossmodal.audioDim,
                              videoFrames: videoFrames, videoDim: c.crossmodal.videoDim)
        let r = KeyedRandom(seed: 2, stream: "bench")
        for i in 0..<(batch * textLength) {
            st.inputIds[i] = Int32(1000 + Int(r.word(i) % 20000)); st.attentionMask[i] = 1
        }
        r.fillUniform(st.audio, batch * audioFrames * c.crossmodal.audioDim, lo: -1, hi: 1)
        r.fillUniform(st.video, batch * videoFrames * c.crossmodal.videoDim, lo: -1, hi: 1)
        for b in 0..<batch {
            st.maskPositions[b] = Int32(1 + b % (textLength - 2)); st.inputIds[b * textLength + Int(st.maskPositions[b])] = 103
            st.targets[b] = Float(b % 7) - 3; st.sampleIds[b] = Int64(b)
            st.audioLengths[b] = Int32(audioFrames); st.videoLengths[b] = Int32(videoFrames)
        }
        let batchView = st.batch()
        func step(_ s: Int) throws {
            net.zeroGradients()
            try net.forward(batchView, training: true, seed: 1, epoch: UInt64(s))
            net.backward()
            opt.update(params: net.params + net.layout.trainableStart, grads: net.grads) { opt.baseLR($0) }
        }
        for s in 0..<warmup { try step(s) }
        var times: [Double] = []
        for s in 0..<steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try step(warmup + s)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            log(String(format: "  step %d: %.1f ms", s + 1, times.last! * 1000))
        }
        times.sort()
        let median = times[times.count / 2]
        let f = usefulFLOPs(config: c)
        let flops = (f.bertForward + f.encoderFwdBwd + f.bertBackward) * Double(batch)
        let rate = ModelBenchmark.sgemmRate()
        return Result(task: task.rawValue, batch: batch, threads: threads, steps: steps, msPerStep: median * 1000,
                      samplesPerSecond: Double(batch) / median, usefulGFLOPs: flops / median / 1e9, sgemmGFLOPs: rate)
    }
}
