// One optimiser step of data-parallel training, in the order of llm.c's main loop:
//   begin → microBatch (forward, backward; gradients accumulate) × A → reduceGradients
//   → agree (one small all-reduce: loss, non-finite count, skipped samples, stop requests)
//   → update (only when the agreement is finite).
// The trainer, `skesl bench` (ModelBenchmark) and TrainStepTests all run steps through this
// type, so what is measured and tested is what trains. The loss of every micro-batch is
// normalised by the global step's sample count, so summed gradients are the gradient of the
// global mean for any split into ranks and micro-batches.
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLModel

public final class TrainStep {
    public let net: SKESLNetwork
    public let optimizer: Optimizer
    /// Nil on one process: no gradient reduction and no all-reduce of the step's figures.
    let comm: Communicator?
    let reducer: GradientReducer?
    let timer: StepTimer?
    let seed: UInt64

    private var lossSum = 0.0
    private var nonFinite: [Int64] = []
    private var skipped = 0

    public init(net: SKESLNetwork, optimizer: Optimizer, comm: Communicator? = nil, reducer: GradientReducer? = nil,
                timer: StepTimer? = nil, seed: UInt64) {
        self.net = net; self.optimizer = optimizer; self.comm = comm; self.reducer = reducer; self.timer = timer; self.seed = seed
    }

    /// Starts step `step` (1-based): gradients and the step's sums to zero.
    public func begin(step: Int) {
        timer?.begin(step: step)
        net.zeroGradients()
        lossSum = 0; nonFinite.removeAll(keepingCapacity: true); skipped = 0
    }

    /// Forward and backward of one micro-batch. `globalSamples`: the step's samples over all
    /// ranks and micro-batches (the loss's normaliser). On the last micro-batch the gradient
    /// goes to the reducer bucket by bucket while backward runs. `bertRows`: BERT's [MASK]
    /// rows from the cache (frozen-BERT pretraining).
    public func microBatch(_ batch: Batch, globalSamples: Int, epoch: Int, last: Bool,
                           bertRows: UnsafePointer<Float>? = nil) throws {
        timer?.lap(.data)
        let n = max(globalSamples, 1)
        let loss = try net.forward(batch, training: true, seed: seed, epoch: UInt64(epoch), normalizer: n, bertRows: bertRows)
        lossSum += Double(loss) * Double(n)
        for i in 0..<batch.size where !net.predictions[i].isFinite { nonFinite.append(batch.sampleIds[i]) }
        timer?.lap(.forward)
        if last, let r = reducer {
            var failure: Error? = nil
            net.backward { range in do { try r.markReady(range) } catch { failure = failure ?? error } }
            if let f = failure { throw f }
        } else {
            net.backward()
        }
        timer?.lap(.backward)
    }

    /// A micro-batch with no samples on this rank (the global batch's tail): nothing to
    /// compute, but on the last one the reducer must still see every bucket ready.
    public func emptyMicroBatch(last: Bool) throws {
        if last, let r = reducer { try r.markReady(0..<net.layout.trainableCount) }
    }

    /// Samples the loader passed over in this step (bad samples under data.skipBadSamples).
    public func noteSkipped(_ n: Int) { skipped += n }

    /// Waits for the gradient sum over ranks.
    public func reduceGradients() throws {
        guard let r = reducer, let c = comm else { return }
        if let t = timer { try t.gradientWait(c) { try r.finish() } } else { try r.finish() }
    }

    /// What every rank knows after a step's all-reduce.
    public struct Agreement: Equatable {
        /// The loss over the step's global batch (mean over its samples).
        public var loss: Double
        /// Samples with a non-finite prediction, over all ranks.
        public var nonFiniteSamples: Int
        /// This rank's samples with a non-finite prediction (ids, for the error message).
        public var localNonFinite: [Int64]
        /// Samples skipped as bad, over all ranks.
        public var skipped: Int
        /// Some rank was asked to stop after this step (SIGUSR1, a first SIGTERM/SIGINT).
        public var stopAfterStep: Bool
        /// Some rank was asked to stop now (SIGTERM during a step): drop this step.
        public var stopNow: Bool
        public var isFinite: Bool { nonFiniteSamples == 0 && loss.isFinite }
    }

    /// The step's figures summed over ranks, in one all-reduce that also carries the step
    /// timer's slots (every rank's ready time). `stop`: this rank's stop request, read by
    /// the caller under its commit lock.
    public func agree(stop: StopLevel, globalSamples: Int) throws -> Agreement {
        let fields = [lossSum, Double(nonFinite.count), Double(skipped), stop >= .endOfStep ? 1 : 0, stop == .now ? 1 : 0]
        var v = fields + (timer?.readySlots() ?? [])
        if let c = comm, c.size > 1 { try c.allReduce(&v) }
        timer?.synced(v)
        return Agreement(loss: v[0] / Double(max(globalSamples, 1)), nonFiniteSamples: Int(v[1]), localNonFinite: nonFinite,
                         skipped: Int(v[2]), stopAfterStep: v[3] > 0, stopNow: v[4] > 0)
    }

    /// The optimiser update with each parameter group's rate; returns the rates used.
    /// Sharded (the reducer reduce-scatters): this rank updates its shard, then an all-gather
    /// gives every rank the whole parameter buffer (timed as communication, `allreduce`).
    @discardableResult
    public func update(rate: (_ group: ParameterGroup, _ base: Float, _ optimizerStep: Int) -> Float) throws -> [String: Double] {
        let stepIndex = optimizer.step
        var byGroup: [ParameterGroup: Float] = [:]
        for g in optimizer.groups { byGroup[g] = rate(g, optimizer.baseLR(g), stepIndex) }
        let lr: (ParameterGroup) -> Float = { byGroup[$0]! }
        let params = net.params + net.layout.trainableStart
        if let shards = reducer?.shards, let c = comm {
            let mine = shards.shard(c.rank)
            try optimizer.update(params: params, grads: net.grads, shard: mine,
                                 sumOverRanks: { try c.allReduce($0, .sum) }, lr: lr)
            timer?.lap(.optimizer)
            try c.allGatherShards(params, shards: shards.shards)
            timer?.lap(.allreduce)
        } else {
            optimizer.update(params: params, grads: net.grads, lr: lr)
            timer?.lap(.optimizer)
        }
        return Dictionary(uniqueKeysWithValues: byGroup.map { ($0.key.rawValue, Double($0.value)) })
    }

    /// Sharded only: every rank's shard of the optimiser's moments goes to every rank, so
    /// that rank 0's checkpoint holds all of them (and a resume on any number of ranks reads
    /// the format it always has). A collective: every rank calls it before a checkpoint.
    public func gatherOptimizerState() throws {
        guard shardsOptimizerState, let shards = reducer?.shards, let c = comm else { return }
        try c.allGatherShards(optimizer.m, shards: shards.shards)
        try c.allGatherShards(optimizer.v, shards: shards.shards)
    }

    /// True when each rank holds only its shard of the moments between checkpoints.
    public var shardsOptimizerState: Bool { reducer?.shards != nil && (comm?.size ?? 1) > 1 }
}
