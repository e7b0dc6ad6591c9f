// The training loop of `skesl pretrain` and `skesl finetune`, for one process or
// many MPI ranks. Each step: every rank runs forward and backward on its part of the
// global batch (micro-batches accumulate), the gradient buffer is summed over ranks
// in buckets while backward still runs, the optimiser updates identical parameters on
// every rank. The loss is normalised by the global batch size, so summed gradients
// are those of the global mean for any world size.
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLHDF5
import SKESLKernels
import SKESLLog
import SKESLModel
import SKESLStore
import SKESLText

public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

public struct RunSummary: Sendable {
    public var status: RunStatus
    public var steps: Int
    public var epochsCompleted: Int
    public var lastCheckpoint: String?
    public var bestEpoch: Int
    public var finalLoss: Double
}

public final class Trainer {
    public let config: RunConfig
    public let comm: Communicator
    public let net: SKESLNetwork
    public let optimizer: Optimizer
    public let store: FeatureStore
    public let text: TextPipeline
    public internal(set) var state = TrainingState()
    public var rank: Int { comm.rank }
    public var worldSize: Int { comm.size }
    let yaml: String
    let say: (String) -> Void
    var log: MetricsLog?
    var reducer: GradientReducer?
    public internal(set) var lastCheckpoint: String?
    /// This rank's compute threads (train.threads resolved: TrainConfig.resolvedThreads).
    let threads: Int
    /// Why the gradient sum runs as it does, where `train.allreduce: auto` chose it (the header and run_start).
    private(set) var allReduceWhy: String?
    /// The world rank of this rank's host's first rank, as MPI groups the ranks that share
    /// memory (Communicator.hostLayout); nil on one rank. The placement report's `node`.
    let hostLeader: Int?
    /// Copies a resume completed, logged once the metrics log is open.
    var copiesCompletedOnResume: [String] = []

    /// `resume`: nil (start fresh), "auto" (newest complete valid checkpoint in the
    /// run's checkpoint directory, if any) or a checkpoint path.
    public init(config rc: RunConfig, comm: Communicator, resume: String? = nil,
                say: @escaping (String) -> Void = { Log.info($0) }) throws {
        self.comm = comm
        let isRoot = comm.rank == 0
        self.say = { m in if isRoot { say(m) } }
        StopSignal.setLabel("rank \(comm.rank)")
        threads = try rc.train.resolvedThreads()
        setComputeThreads(threads)
        FaultInjection.rank = comm.rank
        store = try FeatureStore(directory: rc.data.store)
        let mc = try ModelSetup.modelConfig(rc, spec: store.spec)
        var rcResolved = rc
        rcResolved.model = mc
        config = rcResolved
        yaml = try RunConfigLoader.yaml(rcResolved)
        if rc.task == .finetune && !store.spec.labeled {
            throw ConfigError("\(rc.data.store): fine-tuning needs a labeled store (labels and splits); this one is unlabeled")
        }
        text = try ModelSetup.textPipeline(rc, pretraining: rc.task == .pretrain)
        if let u = text.lexicon?.unscorable, !u.isEmpty {   // the reference rule's odd entries (docs/text.md)
            self.say("lexicon: \(u.count) key(s) whose value is not a number are not lexicon words: " + u.keys.sorted().map { "\($0) (\(u[$0]!))" }.joined(separator: ", "))
        }
        guard text.tokenizer.vocabularySize <= mc.bert.vocabSize else {
            throw ConfigError("the tokenizer has \(text.tokenizer.vocabularySize) tokens but BERT's vocabulary is \(mc.bert.vocabSize): use the tokenizer that belongs to the BERT weights")
        }
        // The shared-memory sum keeps each rank's gradients in the block the host's ranks share,
        // so it comes first and the network computes into it (no copy; docs/cluster.md).
        let bucketBytes = Int(rc.train.bucketMB * 1_048_576)
        var sharedMemoryReducer: GradientReducer? = nil
        // Hosts as MPI sees them (the ranks that can share memory), as the shm sum counts them.
        let layout = comm.size > 1 ? try comm.hostLayout() : nil
        hostLeader = layout?.leader
        let hosts = layout?.hosts ?? 1
        let allReduce = rc.train.allreduce.resolved(hosts: hosts)
        if rc.train.allreduce == .auto {
            allReduceWhy = "train.allreduce auto: " + (hosts > 1 ? "ranks on \(hosts) hosts" : "all ranks on one host")
        }
        if comm.size > 1 && allReduce == .shm {
            let count = ParameterLayout(config: mc).trainableCount
            sharedMemoryReducer = try GradientReducer(sharedMemoryOn: comm, count: count, bucketBytes: bucketBytes,
                                                      average: false, shards: Trainer.shards(rc, count: count, ranks: comm.size))
        }
        net = try SKESLNetwork(config: mc, seed: rc.train.seed, gradients: sharedMemoryReducer?.gradientStorage)
        optimizer = Optimizer(config: rc.train.optimizer, layout: net.layout)
        state.seed = rc.train.seed
        state.worldSize = comm.size
        state.storeFingerprint = store.fingerprint

        if resume == nil, !Checkpoint.list(rcResolved.checkpointDir).isEmpty {
            throw ConfigError("\(rcResolved.checkpointDir) holds checkpoints of an earlier run: resume it (--resume auto), start in a new --run-dir, or remove them")
        }
        if comm.rank == 0 { try ModelSetup.loadInitialWeights(rc, into: net, log: self.say) }
        if let r = resume { try self.resume(r) }
        // Every rank starts from rank 0's parameters (and optimiser state after a resume).
        if comm.size > 1 {
            try comm.broadcast(UnsafeMutableBufferPointer(start: net.params, count: net.layout.count))
            try comm.broadcast(UnsafeMutableBufferPointer(start: optimizer.m, count: optimizer.count))
            try comm.broadcast(UnsafeMutableBufferPointer(start: optimizer.v, count: optimizer.count))
            optimizer.setStep(try comm.broadcast(optimizer.step))   // the optimiser's part, with its moments
            var received = try comm.broadcast(json: state)
            received.worldSize = comm.size
            state = received
            reducer = try sharedMemoryReducer ?? GradientReducer(
                communicator: comm, gradients: net.grads, count: net.layout.trainableCount,
                bucketBytes: bucketBytes, average: false, progress: allReduce,
                shards: Trainer.shards(rc, count: net.layout.trainableCount, ranks: comm.size))
        }
    }

    /// ZeRO-1's shards (train.shardOptimizer), else nil.
    static func shards(_ rc: RunConfig, count: Int, ranks: Int) -> ShardLayout? {
        rc.train.shardOptimizer ? ShardLayout(count: count, parts: ranks) : nil
    }

    deinit { reducer?.close() }

    // MARK: resume

    static func sameDirectory(_ file: String, _ dir: String) -> Bool {
        URL(fileURLWithPath: (file as NSString).deletingLastPathComponent).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: dir).standardizedFileURL.resolvingSymlinksInPath().path
    }

    func resume(_ what: String) throws {
        var candidates: [String]
        if what == "auto" {
            let all = Checkpoint.list(config.checkpointDir)
            for c in all where !c.complete { say("warning: \(c.path) has no .done marker (interrupted while writing): passed over") }
            candidates = all.filter(\.complete).map(\.path)
            if candidates.isEmpty { say("resume auto: no checkpoint in \(config.checkpointDir); starting fresh"); return }
        } else {
            candidates = [what]
        }
        for path in candidates {
            do {
                let s = try Checkpoint.load(path: path, into: net, optimizer: optimizer)
                if s.storeFingerprint != state.storeFingerprint {
                    throw ConfigError("\(path) was written for another feature store (fingerprint \(s.storeFingerprint), this store \(state.storeFingerprint)); its data cursor would not be valid here")
                }
                let ws = state.worldSize
                state = s
                state.worldSize = ws
                lastCheckpoint = path
                // A crash may have come between this checkpoint's .done and the end of its
                // copies (best.h5, a milestone): make them now. Rank 0 writes files.
                if comm.rank == 0, Trainer.sameDirectory(path, config.checkpointDir) {
                    for dst in try Checkpoint.completeOwedCopies(of: path) {
                        say("resume: completed \(dst), which \(path) owed (the run had stopped before copying it)")
                        copiesCompletedOnResume.append(dst)
                    }
                }
                say("resumed from \(path): step \(s.step), data cursor epoch \(s.cursorEpoch) position \(s.cursorPosition)"
                    + (s.worldSize != ws ? " (written by \(s.worldSize) ranks, continuing on \(ws): same sample order and global batch)" : ""))
                return
            } catch {
                if what != "auto" { throw error }
                say("warning: \(path) cannot be used (\(error)); trying an older checkpoint")
            }
        }
        throw TrainingError("resume auto: every checkpoint in \(config.checkpointDir) is damaged; remove them or resume from a path")
    }

    /// Gradient all-reduce time that backward did not hide, on rank 0.
    public internal(set) var commExposed = 0.0
    /// Wall time during which some gradient bucket was being reduced, on rank 0.
    public internal(set) var commTotal = 0.0

    func commMessage(stepSeconds: Double) -> String? {
        guard worldSize > 1, stepSeconds > 0 else { return nil }
        return String(format: "gradient all-reduce: %.2f s in flight, %.2f s waited for (%.1f%% of %.1f s of steps)",
                      commTotal, commExposed, 100 * commExposed / stepSeconds, stepSeconds)
    }

    /// The checkpoint at an epoch's end, and the copies it owes: `best.h5` after a new best
    /// validation loss, `milestone-epochNNN.h5` at a milestone epoch. The checkpoint records
    /// them before its `.done` exists, so a crash anywhere in between is completed by the
    /// next resume (`Checkpoint.completeOwedCopies`).
    func endOfEpochCheckpoint(epoch: Int, newBest: Bool) throws {
        var owed: [String] = []
        if newBest { owed.append("best.h5") }
        if config.checkpoint.milestones.contains(epoch) { owed.append(String(format: "milestone-epoch%03d.h5", epoch)) }
        // The last step may have written this step's checkpoint already (an interval), but
        // without the owed copies recorded: write it again then.
        let p = lastCheckpointIsCurrent && owed.isEmpty ? lastCheckpoint! : try writeCheckpoint(reason: .epoch, owedCopies: owed)
        for dst in try Checkpoint.completeOwedCopies(of: p) {
            try log?.checkpoint(epoch: epoch, step: state.step, path: dst,
                                reason: CheckpointReason(copy: dst))
        }
    }

    let commit = NSLock()
    /// The run's run_end record is written (by the loop's end or by a SIGTERM's write).
    var runEndWritten = false
    var runStarted = 0.0

    /// SIGTERM (or a second stop request), on the signal thread: rank 0 writes the last
    /// completed step's checkpoint and the run_end record at once, without waiting for the
    /// step in progress. Parameters and optimiser state change only in the commit section,
    /// which `commit` excludes, so they hold a completed step; the gradient reducer and
    /// forward/backward only write gradients and activations. No MPI call is made here: the
    /// other ranks' collectives go on undisturbed, and the loop stops every rank at the
    /// step's all-reduce (or the launcher's SIGKILL ends the processes first).
    func writeForStop() {
        commit.lock(); defer { commit.unlock() }
        guard rank == 0, !runEndWritten else { return }
        // Sharded optimiser state: rank 0 holds only its shard of the moments, and gathering
        // the others takes a collective that a signal thread cannot join safely. The loop
        // stops at the step's agreement instead and writes the checkpoint there (one step
        // later; docs/checkpoint-format.md, "Stopping").
        if config.train.shardOptimizer && worldSize > 1 {
            say("the optimiser state is sharded (train.shardOptimizer): the checkpoint of step \(state.step) is written when the ranks "
                + "end the step in progress, which is then dropped; a launcher must allow that long before SIGKILL "
                + "(Cluster/launch.sh --kill-grace), or send SIGUSR1")
            return
        }
        var path = lastCheckpoint
        if state.step > 0 && !lastCheckpointIsCurrent {
            do { path = try writeCheckpoint(reason: .interrupted) } catch {
                say("error: the checkpoint for the stop could not be written: \(error)")
                return
            }
        }
        try? log?.runEnd(status: .interrupted, epochs: state.epochsCompleted, steps: state.step,
                         elapsedSeconds: MonotonicClock().now() - runStarted, bestEpoch: state.bestEpoch >= 0 ? state.bestEpoch + 1 : nil,
                         message: "stop requested during step \(state.step + 1): written at once, that step abandoned")
        RunStatusFile.write(.interrupted)
        runEndWritten = true
        say(state.step == 0 ? "interrupted before the first step completed: nothing to save"
            : "interrupted: step \(state.step) saved" + (path.map { " in \($0)" } ?? "") + "; the step in progress is abandoned")
    }

    /// The newest checkpoint holds the current step (the last step, or a stop, wrote it).
    var lastCheckpointIsCurrent: Bool { lastCheckpoint?.hasSuffix(Checkpoint.fileName(step: state.step)) ?? false }

    @discardableResult
    func writeCheckpoint(reason: CheckpointReason, owedCopies: [String] = []) throws -> String {
        let path = config.checkpointDir + "/" + Checkpoint.fileName(step: state.step)
        let bytes = try Checkpoint.save(path: path, net: net, optimizer: optimizer, state: state, runConfigYAML: yaml,
                                        owedCopies: owedCopies)
        lastCheckpoint = path
        Checkpoint.prune(config.checkpointDir, keepLast: config.checkpoint.keepLast)
        try log?.checkpoint(epoch: state.epochOfLastStep, step: state.step, path: path, reason: reason, bytes: bytes)
        return path
    }

    // MARK: evaluation

    public struct Evaluation {
        public var loss: Double
        public var metrics: RegressionMetrics?
        public var predictions: [Float]
        public var labels: [Float]
        public var ids: [Int64]
        public var utterances: [String]
    }

    /// Predictions on a split, every rank a part, gathered on every rank.
    public func evaluate(split name: String) throws -> Evaluation {
        try Trainer.evaluate(net: net, store: store, text: text, comm: comm, split: name, config: config)
    }

    public static func evaluate(net: SKESLNetwork, store: FeatureStore, text: TextPipeline, comm: Communicator,
                                split name: String, config rc: RunConfig, batch: Int = 32) throws -> Evaluation {
        guard let split = Split(name: name) else { throw ConfigError("\(name) is not a split name (train, valid, test)") }
        let loader = try StoreLoader(store: store, config: LoaderConfig(globalBatchSize: batch * comm.size, microBatches: 1, seed: 0,
                                                                         shuffle: false, split: split, prefetchDepth: 2,
                                                                         skipBadSamples: rc.data.skipBadSamples,
                                                                         maxOpenShards: rc.data.maxOpenShards))
        var preds: [Float] = [], labels: [Float] = [], ids: [Int64] = [], utts: [String] = []
        if loader.count > 0 {
            let it = try loader.batches(rank: comm.rank, worldSize: comm.size, untilEpoch: 1)
            defer { it.close() }
            let tb = TextBatch(capacity: loader.maxLocalBatch(worldSize: comm.size), length: rc.data.textLength)
            while let b = try it.next() {
                guard b.count > 0 else { continue }
                try text.fill(tb, from: b, seed: rc.train.seed, epoch: 0)
                try net.forward(TextPipeline.batch(tb, b), training: false)
                for i in 0..<b.count {
                    preds.append(net.predictions[i]); labels.append(tb.targets[i]); ids.append(b.globalIds[i]); utts.append(b.utteranceIds[i])
                }
            }
        }
        if comm.size > 1 {
            preds = try preds.withUnsafeBufferPointer { try comm.allGatherVariable($0) }.flatMap { $0 }
            labels = try labels.withUnsafeBufferPointer { try comm.allGatherVariable($0) }.flatMap { $0 }
            ids = try ids.withUnsafeBufferPointer { try comm.allGatherVariable($0) }.flatMap { $0 }
            utts = try comm.allGather(utts.joined(separator: "\n")).flatMap { $0.isEmpty ? [] : $0.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        }
        var mae = 0.0
        for i in 0..<preds.count { mae += Double(abs(preds[i] - labels[i])) }
        mae /= Double(max(preds.count, 1))
        let metrics = preds.isEmpty || preds.contains(where: { !$0.isFinite }) ? nil : try RegressionMetrics.compute(predictions: preds, labels: labels)
        return Evaluation(loss: preds.isEmpty ? .nan : mae, metrics: metrics, predictions: preds, labels: labels, ids: ids, utterances: utts)
    }
}

// MARK: inference (evaluate, predict)

extension Trainer {
    /// A loaded model with its store and text pipeline.
    public struct EvaluationContext {
        public let net: SKESLNetwork
        public let store: FeatureStore
        public let text: TextPipeline
        public let comm: Communicator
        public let config: RunConfig
        /// Compute threads of this rank (TrainConfig.inferenceThreads), and why that many.
        public let threads: Int
        public let threadsWhy: String
        public func evaluate(split: String) throws -> Evaluation {
            try Trainer.evaluate(net: net, store: store, text: text, comm: comm, split: split, config: config)
        }
    }

    /// Builds the model a checkpoint (or weights file) describes and loads it.
    public static func inferenceContext(checkpoint: String, config rc0: RunConfig, comm: Communicator) throws -> EvaluationContext {
        let f = try H5File.open(checkpoint)
        let mc = try WeightsFile.config(in: f)
        var rc = rc0
        // The checkpoint's own run config gives the text length it was trained with, always
        // (a model trained on 16 tokens predicts differently from 39), and the tokenizer
        // unless one is given.
        if f.hasAttribute("run_config_yaml") {
            let trained = try RunConfigLoader.load(yamlText: try f.stringAttribute("run_config_yaml"), source: checkpoint)
            rc.data.textLength = trained.data.textLength
            if rc0.data.tokenizer.isEmpty {
                rc.data.tokenizer = trained.data.tokenizer
                rc.initialize.bert = trained.initialize.bert
                if rc.data.tokenizer.isEmpty && rc.initialize.bert.isEmpty { rc.initialize.checkpoint = trained.initialize.checkpoint }
            }
        }
        let store = try FeatureStore(directory: rc.data.store)
        guard mc.task != .pretrain else {
            throw ConfigError("\(checkpoint) is a pretraining checkpoint (its head predicts masked-word intensity); evaluate a fine-tuned one")
        }
        if mc.task != .textOnly {
            guard store.spec.audioDim == mc.crossmodal.audioDim, store.spec.videoDim == mc.crossmodal.videoDim else {
                throw ConfigError("\(rc.data.store): feature dimensions (audio \(store.spec.audioDim), video \(store.spec.videoDim)) differ from the checkpoint's model (\(mc.crossmodal.audioDim), \(mc.crossmodal.videoDim))")
            }
        }
        let net = try SKESLNetwork(config: mc)
        try WeightsFile.read(into: net, from: f)
        let text = try TextPipeline(tokenizer: try ModelSetup.tokenizer(rc), lexicon: nil, length: rc.data.textLength)
        // OpenBLAS's products and the model's own loops on the same count (as a training rank's).
        let me = RankPlacement.read(rank: comm.rank, threads: 1)
        let onHost = comm.size > 1 ? try comm.splitByHost().size : 1
        let threads = try rc.train.inferenceThreads(allowedCPUs: me.cpus.count, hostCPUs: me.hostCPUs, ranksOnHost: onHost,
                                                    quotaCPUs: me.quota?.cpus)
        setComputeThreads(threads.count)
        return EvaluationContext(net: net, store: store, text: text, comm: comm, config: rc, threads: threads.count, threadsWhy: threads.why)
    }
}
