// `skesl bench model`: the training step at reference shapes, timed, with the
// machine's own sgemm rate measured in the same run (the fraction of it reached),
// and optionally the PyTorch peer run by scripts/bench_torch.py with the same threads.
import Foundation
import SKESLTraining
import SKESLKernels
import SKESLModel
import SKESLStore

public struct ModelBenchmark {
    public var task: ModelTask = .pretrain
    public var batch = 32, textLength = 39, audioFrames = 400, videoFrames = 55
    public var steps = 5, warmup = 1
    public var threads = 1
    public var bert = BertConfig.base
    /// Off: the full computation over every row, as the reference writes it.
    public var rowPath = true
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
        if rowPath && c.task == .pretrain && c.freezeBert {
            // Work the [MASK]-row step does: BERT's last layer has keys and values for every
            // row, the rest for one row; the encoder and head one row.
            let lastRow = 2 * L * H * 2 * H + 2 * H * H + 2 * 2 * L * H + 2 * H * H + 2 * 2 * H * I
            return ((layers - 1) * bertLayer + lastRow, rowStepFLOPs(config: c), 0)
        }
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
        BLASKernel.sgemmRate(m: m, n: n, k: k, seconds: seconds)
    }

    public struct Result: Codable {
        public var task: String, batch: Int, threads: Int, steps: Int
        public var msPerStep: Double, samplesPerSecond: Double, usefulGFLOPs: Double, sgemmGFLOPs: Double
        public var fractionOfSgemm: Double { usefulGFLOPs / sgemmGFLOPs }
    }

    /// Times `steps` optimiser steps (forward, backward, Adam) on random inputs.
    public func run(log: (String) -> Void = { print($0) }) throws -> Result {
        setComputeThreads(threads)
        let c = modelConfig()
        let net = try SKESLNetwork(config: c, seed: 1)
        net.rowPathEnabled = rowPath
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
        // The trainer's step (one process: no reduction), at each group's base rate.
        let trainStep = TrainStep(net: net, optimizer: opt, seed: 1)
        func step(_ s: Int) throws {
            trainStep.begin(step: s + 1)
            try trainStep.microBatch(batchView, globalSamples: batch, epoch: s, last: true)
            try trainStep.update { _, base, _ in base }
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

// MARK: the cached pretraining step, with features streamed from a store

extension ModelBenchmark {
    public struct CachedResult {
        public var samplesPerSecond: Double        // with the loader streaming from the store
        public var inMemorySamplesPerSecond: Double // the same step on one batch held in memory
        public var loaderOverhead: Double { inMemorySamplesPerSecond / samplesPerSecond - 1 }
        public var usefulGFLOPs: Double
        public var encodeRowsPerSecond: Double      // the cache pass: BERT [MASK] rows per second (eval mode)
        public var loaderCPUSecondsPerSample: Double // the prefetch thread's CPU time per sample read
        /// The loader's CPU time over the in-memory step's time, per sample: what it adds to
        /// the step when its thread shares the training core.
        public var loaderCPUShare: Double { loaderCPUSecondsPerSample * inMemorySamplesPerSecond }
    }

    /// Encoder + head FLOPs per sample of the [MASK]-row step (forward and backward), as
    /// computed: without keys and values (Network+CrossModalRows.swift), per layer and
    /// modality q (2He), q W_k (2eD), scores and x̂ᵀp (2·2TD), context (2De), out (2eH);
    /// fc 2H²; backward about twice the forward.
    public func rowStepFLOPs(config c: ModelConfig) -> Double {
        let H = Double(c.bert.hiddenSize), e = Double(c.crossmodal.attentionDim), nl = Double(c.crossmodal.layers)
        let ta = Double(audioFrames), tv = Double(videoFrames), da = Double(c.crossmodal.audioDim), dv = Double(c.crossmodal.videoDim)
        func modality(_ t: Double, _ d: Double) -> Double { 2 * H * e + 2 * e * d + 4 * t * d + 2 * d * e + 2 * e * H }
        let layer = modality(ta, da) + modality(tv, dv) + 2 * H * H
        let head = 2 * H * Double(c.head.hidden)
        return 3 * (nl * layer + head)
    }

    /// Times the cached step (rows given, features from `store` through the prefetching
    /// loader), then the same step on one in-memory batch, and BERT's [MASK]-row encoding.
    public func runCached(store dir: String, steps: Int = 20, log: (String) -> Void = { print($0) }) throws -> CachedResult {
        setComputeThreads(threads)
        let c = modelConfig()
        let net = try SKESLNetwork(config: c, seed: 1)
        let opt = Optimizer(config: OptimizerConfig(), layout: net.layout)
        let store = try FeatureStore(directory: dir)
        var lc = LoaderConfig(globalBatchSize: batch, seed: 1, prefetchDepth: 2, maxOpenShards: 64)
        lc.readText = false   // the cache gives the text side
        let loader = try StoreLoader(store: store, config: lc)
        log("  store: \(store.count) samples in \(store.shardCount) shard(s); reads \(loader.readsRowTable ? "through the row table, shard files mapped once" : "through HDF5, at most \(lc.maxOpenShards) shards open")")
        let H = c.bert.hiddenSize
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: batch * H); defer { rows.deallocate() }
        KeyedRandom(seed: 3, stream: "rows").fillUniform(rows, batch * H, lo: -1, hi: 1)
        let text = TextBatch(capacity: batch, length: textLength)
        for i in 0..<batch { text.maskPos[i] = Int32(1 + i % (textLength - 2)); text.targets[i] = Float(i % 7) - 3 }
        text.setCount(batch)
        let trainStep = TrainStep(net: net, optimizer: opt, seed: 1)
        func step(_ b: StoreBatch, epoch: Int) throws {
            for i in 0..<b.count { text.sampleIds[i] = b.globalIds[i] }
            trainStep.begin(step: 1)
            try trainStep.microBatch(TextPipeline.batch(text, b), globalSamples: b.count, epoch: epoch, last: true, bertRows: rows)
            try trainStep.update { _, _, _ in 1e-4 }
        }
        // Streamed: every step reads its batch from the store (prefetched in the background).
        // Untimed first: one pass over the store (at most 160 steps or 4x the timed steps), as every
        // epoch after a run's first finds it: shard files mapped, rows verified once.
        // The held batch is read before the prefetch thread starts: a loader's shard
        // readers serve one thread at a time.
        let held = loader.makeBatch(worldSize: 1)
        try loader.fill(held, epoch: 0, positions: 0..<batch)
        let it = try loader.batches(rank: 0, worldSize: 1)
        defer { it.close() }
        // The whole first epoch when it is short (stores of many shards: every shard mapped
        // and every row verified before timing, as in a run's later epochs).
        let warm = max(2, min(loader.stepsPerEpoch, max(4 * steps, 160)))
        for _ in 0..<warm { if let b = try it.next() { try step(b, epoch: b.epoch) } }
        let first = it.fillCost
        let firstPassCPU = first.cpuSeconds / Double(max(first.samples, 1))
        // Timed: rounds of streamed steps and of the same step on one batch held in memory,
        // alternating so that both see the same machine; per-step medians (this machine is
        // shared: a mean takes in every interruption).
        try step(held, epoch: 0)
        let before = it.fillCost
        var streamedTimes: [Double] = [], heldTimes: [Double] = []
        func timed(_ body: () throws -> Void) rethrows -> Double {
            let t = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
        }
        let rounds = 3, perRound = max(1, steps / rounds)
        for r in 0..<rounds {
            for _ in 0..<perRound {
                guard let b = try it.next() else { break }
                streamedTimes.append(try timed { try step(b, epoch: b.epoch) })
            }
            for s in 0..<perRound { heldTimes.append(try timed { try step(held, epoch: r * perRound + s) }) }
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? .nan : s[s.count / 2] }
        let streamed = Double(batch) / median(streamedTimes)
        let inMemory = Double(batch) / median(heldTimes)
        let timedCost = it.fillCost
        let loaderCPU = (timedCost.cpuSeconds - before.cpuSeconds) / Double(max(timedCost.samples - before.samples, 1))
        log(String(format: "  cached step: %.1f samples/s streamed from the store, %.1f samples/s in memory; loader %.1f µs CPU per sample (%.1f%% of the in-memory step; %.1f µs in the untimed first pass)",
                   streamed, inMemory, loaderCPU * 1e6, 100 * loaderCPU * inMemory, firstPassCPU * 1e6))
        // The cache pass: BERT's [MASK] rows in eval mode, batches of 32.
        let st = BatchStorage(size: batch, textLength: textLength, audioFrames: 1, audioDim: c.crossmodal.audioDim,
                              videoFrames: 1, videoDim: c.crossmodal.videoDim)
        for i in 0..<(batch * textLength) { st.inputIds[i] = Int32(1000 + i % 20000); st.attentionMask[i] = 1 }
        for b in 0..<batch { st.maskPositions[b] = Int32(1 + b % (textLength - 2)) }
        _ = try net.encodeMaskRows(st.batch())
        let t2 = DispatchTime.now().uptimeNanoseconds
        let reps = 3
        for _ in 0..<reps { _ = try net.encodeMaskRows(st.batch()) }
        let encode = Double(reps * batch) / (Double(DispatchTime.now().uptimeNanoseconds - t2) / 1e9)
        log(String(format: "  cache pass: %.1f [MASK] rows/s (BERT forward, eval mode)", encode))
        return CachedResult(samplesPerSecond: streamed, inMemorySamplesPerSecond: inMemory,
                            usefulGFLOPs: rowStepFLOPs(config: c) * streamed / 1e9, encodeRowsPerSecond: encode,
                            loaderCPUSecondsPerSample: loaderCPU)
    }
}
