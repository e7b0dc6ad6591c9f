// The training loop of `skesl pretrain` and `skesl finetune`, for one process or
// many MPI ranks. Each step: every rank runs forward and backward on its part of the
// global batch (micro-batches accumulate), the gradient buffer is summed over ranks
// in buckets while backward still runs, the optimiser updates identical parameters on
// every rank. The loss is normalised by the global batch size, so summed gradients
// are those of the global mean for any world size.
import Foundation
import SKESLDistributed
import SKESLHDF5
import SKESLKernels
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
    public private(set) var state = TrainingState()
    public var rank: Int { comm.rank }
    public var worldSize: Int { comm.size }
    let yaml: String
    let say: (String) -> Void
    var log: MetricsLog?
    var reducer: GradientReducer?
    public private(set) var lastCheckpoint: String?
    /// Copies a resume completed, logged once the metrics log is open.
    var copiesCompletedOnResume: [String] = []

    /// `resume`: nil (start fresh), "auto" (newest complete valid checkpoint in the
    /// run's checkpoint directory, if any) or a checkpoint path.
    public init(config rc: RunConfig, comm: Communicator, resume: String? = nil,
                say: @escaping (String) -> Void = { FileHandle.standardError.write(($0 + "\n").data(using: .utf8)!) }) throws {
        self.comm = comm
        let isRoot = comm.rank == 0
        self.say = { m in if isRoot { say(m) } }
        StopSignal.setLabel("rank \(comm.rank)")
        setBLASThreads(rc.train.threads)
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
        net = try SKESLNetwork(config: mc, seed: rc.train.seed)
        optimizer = Optimizer(config: rc.train.optimizer, layout: net.layout)
        state.seed = rc.train.seed
        state.worldSize = comm.size
        state.storeFingerprint = Trainer.fingerprint(store)

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
            var ints = [Int64(state.step), Int64(state.cursorEpoch), Int64(state.cursorPosition), Int64(state.epochsCompleted),
                        Int64(state.bestEpoch), Int64(optimizer.step)]
            try comm.broadcast(&ints)
            state.step = Int(ints[0]); state.cursorEpoch = Int(ints[1]); state.cursorPosition = Int(ints[2])
            state.epochsCompleted = Int(ints[3]); state.bestEpoch = Int(ints[4]); optimizer.setStep(Int(ints[5]))
            state.bestValidLoss = try comm.broadcast(state.bestValidLoss)
            let progress = rc.train.allreduce
            reducer = try GradientReducer(communicator: comm, gradients: net.grads, count: net.layout.trainableCount,
                                          bucketBytes: Int(rc.train.bucketMB * 1_048_576), average: false, progress: progress)
        }
    }

    deinit { reducer?.close() }

    static func fingerprint(_ s: FeatureStore) -> String {
        var h = fnv1a64(s.manifest.name)
        for sh in s.manifest.shards { h = FNV1a64.fold(h, fnv1a64("\(sh.file):\(sh.samples):\(sh.crc32)")) }
        return String(format: "%016llx", h)
    }

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

    // MARK: the loop

    public func run(stopAfterSteps: Int? = nil) throws -> RunSummary {
        let rc = config
        let G = rc.train.globalBatch, A = rc.train.microBatches
        let isRoot = rank == 0
        if rc.task == .finetune && Split(name: rc.data.trainSplit) == nil {
            throw ConfigError("data.trainSplit \(rc.data.trainSplit) is not a split name (train, valid, test)")
        }
        var loaderConfig = LoaderConfig(globalBatchSize: G, microBatches: A, seed: rc.train.seed, shuffle: true,
                                        split: rc.task == .finetune ? Split(name: rc.data.trainSplit) : nil,
                                        prefetchDepth: rc.data.prefetch, skipBadSamples: rc.data.skipBadSamples,
                                        maxOpenShards: rc.data.maxOpenShards)
        loaderConfig.readText = !rc.data.bertCache   // the cache gives the text side
        loaderConfig.verifyEveryRead = rc.data.verifyEveryRead
        loaderConfig.residentShardBytes = rc.data.residentShardMB << 20
        let loader = try StoreLoader(store: store, config: loaderConfig, log: { m in FileHandle.standardError.write(("rank \(self.rank): " + m + "\n").data(using: .utf8)!) })
        guard loader.count > 0 else { throw ConfigError("\(rc.data.store): no samples to train on\(rc.task == .finetune ? " in split \(rc.data.trainSplit)" : "")") }
        let stepsPerEpoch = loader.stepsPerEpoch
        let iterator = try loader.batches(rank: rank, worldSize: worldSize,
                                          from: LoaderCursor(epoch: state.cursorEpoch, position: state.cursorPosition),
                                          untilEpoch: rc.train.epochs)
        defer { iterator.close() }
        let textBatch = TextBatch(capacity: loader.maxLocalBatch(worldSize: worldSize), length: rc.data.textLength)
        var cache: BertCache.Reader? = nil
        let cacheRows = UnsafeMutablePointer<Float>.allocate(capacity: textBatch.capacity * net.config.bert.hiddenSize)
        defer { cacheRows.deallocate() }
        if rc.data.bertCache {
            let key = BertCache.key(net: net, store: store, text: text, storeFingerprint: state.storeFingerprint)
            if !BertCache.isValid(store, key: key) {
                say("bert cache: encoding every sample's [MASK] row once (BERT in eval mode) into \(BertCache.directory(store))")
                try BertCache.build(net: net, store: store, text: text, comm: comm, key: key, say: say)
            } else {
                say("bert cache: using \(BertCache.directory(store))")
            }
            cache = try BertCache.Reader(store: store, key: key, memoryMB: rc.data.cacheMemoryMB)
        }

        try FileManager.default.createDirectory(atPath: rc.checkpointDir, withIntermediateDirectories: true)
        var progress: ProgressReporter? = nil
        var meter = TrainIntervalMeter(start: MonotonicClock().now(), everySteps: 50, everySeconds: rc.logEverySeconds)
        if isRoot {
            let blas = BLASReport.measure(seconds: 0.3)   // rank 0's kernel and sgemm rate, in the header and run_start
            try? yaml.write(toFile: rc.runDir + "/config.yaml", atomically: true, encoding: .utf8)
            log = try MetricsLog(runDirectory: rc.runDir)
            try log?.runStart(run: (rc.runDir as NSString).lastPathComponent, phase: rc.task.rawValue, worldSize: worldSize,
                              epochs: rc.train.epochs, stepsPerEpoch: stepsPerEpoch, batchSize: G,
                              resumedFromEpoch: state.step > 0 ? state.cursorEpoch + 1 : nil,
                              config: (try? LogJSON.from(rc)) ?? .object([:]),
                              versions: ["skesl": skeslCodeVersion, "openblas": blasConfig], blas: blas)
            for dst in copiesCompletedOnResume {
                try log?.checkpoint(epoch: state.epochOfLastStep, step: state.step, path: dst, reason: CheckpointReason(copy: dst))
            }
            progress = ProgressReporter(options: ProgressOptions(totalEpochs: rc.train.epochs, stepsPerEpoch: stepsPerEpoch,
                                                                 plainEverySeconds: rc.logEverySeconds))
            say("\(rc.task.rawValue): \(loader.count) samples, \(stepsPerEpoch) steps/epoch of \(G) samples, \(worldSize) rank(s) x \(rc.train.threads) thread(s), \(net.layout.trainableCount) trainable parameters")
            say(blas.line)
        }
        let timer = try StepTimer(rank: rank, worldSize: worldSize, diagnose: rc.train.diagnoseImbalance,
                                  logDirectory: rc.train.stepTimeLog ? rc.runDir + "/step-times" : nil, comm: comm)
        let started = MonotonicClock().now()
        runStarted = started
        // A stall drill (StallInjection) applies to runs that did not resume.
        let startedFresh = lastCheckpoint == nil
        // The commit section of a step (update, bookkeeping, checkpoints) and the end of the
        // run hold `commit`; a SIGTERM's immediate write takes it too, so it always sees a
        // completed step and never races a checkpoint of the loop (docs/checkpoint-format.md,
        // "Stopping").
        var holding = false
        defer { if holding { commit.unlock() } }
        StopSignal.setWriteNow { [weak self] in self?.writeForStop() }
        defer { StopSignal.setWriteNow(nil) }
        var status = RunStatus.completed
        var lastLoss = Double.nan
        var stepsThisRun = 0
        var stepSeconds = 0.0
        var epochLossSum = 0.0, epochSamples = 0

        stepLoop: while true {
            if let m = stopAfterSteps, stepsThisRun >= m { status = .stopped; break }
            if rc.train.maxSteps > 0 && state.step >= rc.train.maxSteps { status = .maxSteps; break }
            let stepStart = MonotonicClock().now()
            defer { stepSeconds += MonotonicClock().now() - stepStart }
            timer.begin(step: state.step + 1)
            net.zeroGradients()
            var lossSum = 0.0, nonFinite: [Int64] = [], skipped = 0
            var stepEpoch = state.cursorEpoch, after = LoaderCursor(epoch: state.cursorEpoch, position: state.cursorPosition)
            var stepSamples = 0
            for micro in 0..<A {
                guard let b = try iterator.next() else {
                    if micro == 0 { break stepLoop }
                    throw TrainingError("the data ended inside a step (micro-batch \(micro) of \(A))")
                }
                stepEpoch = b.epoch; after = b.cursorAfterStep; stepSamples = b.globalStepSamples
                skipped += b.skipped
                let last = micro == A - 1
                if b.count > 0 {
                    if let c = cache {
                        try text.fillFromCache(textBatch, rows: cacheRows, from: b, cache: c, seed: rc.train.seed, epoch: b.epoch)
                    } else {
                        try text.fill(textBatch, from: b, seed: rc.train.seed, epoch: b.epoch)
                    }
                    let mb = TextPipeline.batch(textBatch, b)
                    timer.lap(.data)
                    let loss = try net.forward(mb, training: true, seed: rc.train.seed, epoch: UInt64(b.epoch), normalizer: max(stepSamples, 1),
                                               bertRows: cache == nil ? nil : UnsafePointer(cacheRows))
                    lossSum += Double(loss) * Double(max(stepSamples, 1))
                    for i in 0..<b.count where !net.predictions[i].isFinite { nonFinite.append(b.globalIds[i]) }
                    timer.lap(.forward)
                    if last, let r = reducer {
                        var failure: Error? = nil
                        net.backward { range in do { try r.markReady(range) } catch { failure = failure ?? error } }
                        if let f = failure { throw f }
                    } else {
                        net.backward()
                    }
                    timer.lap(.backward)
                } else if last, let r = reducer {
                    try r.markReady(0..<net.layout.trainableCount)
                }
            }
            StallInjection.check(step: state.step + 1, rank: rank, resumed: !startedFresh)
            FaultInjection.check(step: state.step + 1, rank: rank)
            if let r = reducer {
                try timer.gradientWait(comm) { try r.finish() }
                commExposed += r.lastStep.exposedSeconds
                commTotal += r.lastStep.communicationSeconds
            }
            // One small all-reduce carries the loss, the non-finite flag and stop requests, so
            // that every rank takes the same decision. The request is read under `commit`: a
            // SIGTERM write that comes later waits for this step's commit and saves its result,
            // and the next step stops.
            commit.lock(); holding = true
            let stop = StopSignal.level
            // The step timer's slots (every rank's ready time) ride at the end of the vector.
            var stats = [lossSum, Double(nonFinite.count), stop >= .endOfStep ? 1 : 0, Double(skipped), stop == .now ? 1 : 0]
                + timer.readySlots()
            if worldSize > 1 { try comm.allReduce(&stats) }
            timer.synced(stats)
            if stats[4] > 0 {
                // Some rank got SIGTERM: this step is dropped before its update, and rank 0
                // saves the last completed step (unless its signal thread already has).
                status = .interrupted
                break stepLoop
            }
            let stepLoss = stats[0] / Double(max(stepSamples, 1))
            if stats[1] > 0 || !stepLoss.isFinite {
                if !nonFinite.isEmpty {
                    FileHandle.standardError.write("rank \(rank): non-finite prediction at step \(state.step + 1) (epoch \(stepEpoch)) for samples \(nonFinite.prefix(20).map(String.init).joined(separator: ", "))\n".data(using: .utf8)!)
                }
                let msg = "loss is not finite at step \(state.step + 1) (epoch \(stepEpoch)); the parameters were not updated; the last good checkpoint is \(lastCheckpoint ?? "none")" + (isRoot && nonFinite.isEmpty ? "" : "; see the sample ids above")
                try? log?.runEnd(status: .failed, epochs: state.epochsCompleted, steps: state.step, elapsedSeconds: MonotonicClock().now() - started, message: msg)
                if isRoot { RunStatusFile.write(.failed) }
                // Every rank fails here, in this step; the first to abort ends the job, so wait
                // until rank 0 has recorded the failure.
                if worldSize > 1 { try? comm.barrier() }
                throw TrainingError(msg)
            }
            // Update.
            var lrs: [String: Double] = [:]
            let stepIndex = optimizer.step
            optimizer.update(params: net.params + net.layout.trainableStart, grads: net.grads) { g in
                let r = rc.train.schedule.lr(base: self.optimizer.baseLR(g), epoch: stepEpoch, step: stepIndex)
                lrs[g] = Double(r)
                return r
            }
            timer.lap(.optimizer)
            state.step += 1; stepsThisRun += 1
            state.cursorEpoch = after.epoch; state.cursorPosition = after.position
            lastLoss = stepLoss
            epochLossSum += stepLoss * Double(stepSamples); epochSamples += stepSamples
            let epochStep = stepEpoch == after.epoch ? (after.position + G - 1) / G : stepsPerEpoch
            if isRoot {
                progress?.step(epoch: stepEpoch + 1, epochStep: epochStep, samples: stepSamples, loss: stepLoss, lr: lrs)
                meter.add(samples: stepSamples, loss: stepLoss, skipped: Int(stats[3]))
                let now = MonotonicClock().now()
                if meter.due(now: now) {
                    try log?.write(.train(meter.take(now: now, wallTime: Date().timeIntervalSince1970, epoch: stepEpoch + 1, step: state.step,
                                                     epochStep: epochStep, lr: lrs)))
                }
            }
            let epochEnded = after.epoch != stepEpoch
            if epochEnded {
                state.epochsCompleted = after.epoch
                if isRoot {
                    let now = MonotonicClock().now()
                    if !meter.isEmpty {
                        try log?.write(.train(meter.take(now: now, wallTime: Date().timeIntervalSince1970, epoch: stepEpoch + 1, step: state.step, epochStep: epochStep, lr: lrs)))
                    }
                }
                var summary = String(format: "epoch %d done: train loss %.4f (mean over the epoch's samples this run)",
                                     stepEpoch + 1, epochLossSum / Double(max(epochSamples, 1)))
                epochLossSum = 0; epochSamples = 0
                var newBest = false
                if rc.task == .finetune && (stepEpoch + 1) % rc.train.evalEveryEpochs == 0 {
                    let valid = try evaluate(split: rc.data.validSplit)
                    let test = try evaluate(split: rc.data.testSplit)
                    if isRoot {
                        try log?.eval(epoch: stepEpoch + 1, split: "valid", loss: valid.loss, samples: valid.predictions.count, metrics: valid.metrics)
                        try log?.eval(epoch: stepEpoch + 1, split: "test", loss: test.loss, samples: test.predictions.count, metrics: test.metrics)
                    }
                    summary += String(format: ", valid MAE %.4f, test MAE %.4f", valid.loss, test.loss)
                    // The best epoch by train.selection (Selection.swift); the metric stays the MAE.
                    let criterion = SelectionLoss.value(valid, config: rc.train.selection, seed: rc.train.seed, epoch: stepEpoch)
                    if rc.train.selection.loss != .sampleMean { summary += String(format: ", valid \(rc.train.selection.loss.rawValue) %.4f", criterion) }
                    if SelectionLoss.improves(criterion, over: state.bestValidLoss) {
                        state.bestValidLoss = criterion
                        state.bestEpoch = stepEpoch
                        summary += " (best)"
                        newBest = true
                    }
                }
                if isRoot {
                    progress?.endEpoch(summary: summary)
                    try endOfEpochCheckpoint(epoch: stepEpoch + 1, newBest: newBest)
                }
            } else if rc.checkpoint.everySteps > 0 && state.step % rc.checkpoint.everySteps == 0 && isRoot {
                try writeCheckpoint(reason: .interval)
            }
            timer.end()
            if stats[2] > 0 { status = .interrupted; break }
            commit.unlock(); holding = false
        }
        if !holding { commit.lock(); holding = true }
        // A final checkpoint unless the last step wrote one.
        if isRoot && state.step > 0 && lastCheckpoint.map({ !$0.hasSuffix(Checkpoint.fileName(step: state.step)) }) ?? true {
            try writeCheckpoint(reason: CheckpointReason(endOf: status))
        }
        if worldSize > 1 { try comm.barrier() }
        progress?.finish()
        let stepTimes = try timer.summary(comm)
        if timer.steps > 0 { try log?.write(.stepTimes(stepTimes)); say(stepTimes.text) }
        if !runEndWritten {
            try log?.runEnd(status: status, epochs: state.epochsCompleted, steps: state.step,
                            elapsedSeconds: MonotonicClock().now() - started, bestEpoch: state.bestEpoch >= 0 ? state.bestEpoch + 1 : nil,
                            message: commMessage(stepSeconds: stepSeconds))
            if isRoot { RunStatusFile.write(status) }
            runEndWritten = true
        }
        log?.close()
        say("\(status.rawValue): \(state.step) steps, \(state.epochsCompleted) epochs" + (lastCheckpoint.map { ", checkpoint \($0)" } ?? ""))
        if let m = commMessage(stepSeconds: stepSeconds) { say(m) }
        let loaderCost = iterator.fillCost
        if isRoot && stepSeconds > 0 && loaderCost.samples > 0 {
            // What the prefetch thread costs when it shares the training thread's core.
            say(String(format: "data loader: %.1f µs CPU per sample, %.1f%% of %.1f s of steps",
                       1e6 * loaderCost.cpuSeconds / Double(loaderCost.samples), 100 * loaderCost.cpuSeconds / stepSeconds, stepSeconds))
        }
        return RunSummary(status: status, steps: state.step, epochsCompleted: state.epochsCompleted, lastCheckpoint: lastCheckpoint,
                          bestEpoch: state.bestEpoch, finalLoss: lastLoss)
    }

    /// Gradient all-reduce time that backward did not hide, on rank 0.
    public private(set) var commExposed = 0.0
    /// Wall time during which some gradient bucket was being reduced, on rank 0.
    public private(set) var commTotal = 0.0

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
        let p = lastCheckpoint.map { $0.hasSuffix(Checkpoint.fileName(step: state.step)) } == true && owed.isEmpty
            ? lastCheckpoint! : try writeCheckpoint(reason: .epoch, owedCopies: owed)
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
        let current = Checkpoint.fileName(step: state.step)
        var path = lastCheckpoint
        if state.step > 0 && !(lastCheckpoint?.hasSuffix(current) ?? false) {
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
        return EvaluationContext(net: net, store: store, text: text, comm: comm, config: rc)
    }
}
