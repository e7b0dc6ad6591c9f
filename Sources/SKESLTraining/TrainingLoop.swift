// The training loop: run() orchestrates steps, epochs, evaluation and checkpoints, the way
// llm.c's main calls forward, backward and update; the step itself is TrainStep's. Each
// function here is one phase: prepare the run, compute a step, commit it, end an epoch,
// finish the run.
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLKernels
import SKESLLog
import SKESLStore

extension Trainer {
    /// What one call of run() holds: the data side, the step, the displays and the sums.
    final class RunParts {
        let loader: StoreLoader
        let iterator: BatchIterator
        let textBatch: TextBatch
        let cache: BertCache.Reader?
        /// BERT's [MASK] rows of the current micro-batch, from the cache.
        let cacheRows: UnsafeMutablePointer<Float>
        let step: TrainStep
        let timer: StepTimer
        var progress: ProgressReporter?
        /// Every rank's placement, for the step-time diagnosis at the end.
        var placement: PlacementReport?
        var meter: TrainIntervalMeter
        var stepsThisRun = 0, stepSeconds = 0.0, lastLoss = Double.nan
        var epochLossSum = 0.0, epochSamples = 0

        init(loader: StoreLoader, iterator: BatchIterator, textBatch: TextBatch, cache: BertCache.Reader?, rowFloats: Int,
             step: TrainStep, timer: StepTimer, meter: TrainIntervalMeter) {
            self.loader = loader; self.iterator = iterator; self.textBatch = textBatch; self.cache = cache
            cacheRows = .allocate(capacity: rowFloats)
            self.step = step; self.timer = timer; self.meter = meter
        }
        deinit { iterator.close(); cacheRows.deallocate() }
    }

    /// Where a computed (not yet committed) step came from and leaves the data cursor.
    struct ComputedStep {
        var epoch: Int               // the epoch its samples belong to (0-based)
        var after: LoaderCursor      // the cursor after it
        var samples: Int             // its samples over all ranks and micro-batches
    }

    public func run(stopAfterSteps: Int? = nil) throws -> RunSummary {
        let parts = try prepareRun()
        let started = MonotonicClock().now()
        runStarted = started
        // A stall drill (StallInjection) applies to runs that did not resume.
        let resumed = lastCheckpoint != nil
        // The commit section of a step (update, bookkeeping, checkpoints) and the end of the
        // run hold `commit`; a SIGTERM's immediate write takes it too, so it always sees a
        // completed step and never races a checkpoint of the loop (docs/checkpoint-format.md,
        // "Stopping").
        var holding = false
        defer { if holding { commit.unlock() } }
        StopSignal.setWriteNow { [weak self] in self?.writeForStop() }
        defer { StopSignal.setWriteNow(nil) }
        var status = RunStatus.completed
        while true {
            if let m = stopAfterSteps, parts.stepsThisRun >= m { status = .stopped; break }
            if config.train.maxSteps > 0 && state.step >= config.train.maxSteps { status = .maxSteps; break }
            let stepStart = MonotonicClock().now()
            defer { parts.stepSeconds += MonotonicClock().now() - stepStart }
            guard let computed = try computeStep(parts, resumed: resumed) else { break }
            // The stop request is read under `commit`: a SIGTERM write that comes later waits
            // for this step's commit and saves its result, and the next step stops.
            commit.lock(); holding = true
            let agreed = try parts.step.agree(stop: StopSignal.level, globalSamples: computed.samples)
            // Some rank got SIGTERM: this step is dropped before its update, and rank 0 saves
            // the last completed step (unless its signal thread already has).
            if agreed.stopNow { status = .interrupted; break }
            guard agreed.isFinite else { try failNonFinite(agreed, computed, started: started) }
            let rates = try parts.step.update { group, base, optimizerStep in
                self.config.train.schedule.lr(base: base, epoch: computed.epoch, step: optimizerStep)
            }
            try commitStep(parts, computed, agreed, rates: rates)
            parts.timer.end()
            if agreed.stopAfterStep { status = .interrupted; break }
            commit.unlock(); holding = false
        }
        if !holding { commit.lock(); holding = true }
        return try finishRun(parts, status: status, started: started)
    }

    /// The loader, the BERT cache, the metrics log's run_start, the step.
    func prepareRun() throws -> RunParts {
        let rc = config
        let G = rc.train.globalBatch
        if rc.task == .finetune && Split(name: rc.data.trainSplit) == nil {
            throw ConfigError("data.trainSplit \(rc.data.trainSplit) is not a split name (train, valid, test)")
        }
        var lc = LoaderConfig(globalBatchSize: G, microBatches: rc.train.microBatches, seed: rc.train.seed, shuffle: true,
                              split: rc.task == .finetune ? Split(name: rc.data.trainSplit) : nil,
                              prefetchDepth: rc.data.prefetch, skipBadSamples: rc.data.skipBadSamples,
                              maxOpenShards: rc.data.maxOpenShards)
        lc.readText = !rc.data.bertCache   // the cache gives the text side
        lc.verifyEveryRead = rc.data.verifyEveryRead
        lc.residentShardBytes = rc.data.residentShardMB << 20
        let loader = try StoreLoader(store: store, config: lc, log: { [rank] m in Log.rank(rank, m) })
        guard loader.count > 0 else { throw ConfigError("\(rc.data.store): no samples to train on\(rc.task == .finetune ? " in split \(rc.data.trainSplit)" : "")") }
        let iterator = try loader.batches(rank: rank, worldSize: worldSize,
                                          from: LoaderCursor(epoch: state.cursorEpoch, position: state.cursorPosition),
                                          untilEpoch: rc.train.epochs)
        let textBatch = TextBatch(capacity: loader.maxLocalBatch(worldSize: worldSize), length: rc.data.textLength)
        let cache = rc.data.bertCache ? try openBertCache() : nil
        try FileManager.default.createDirectory(atPath: rc.checkpointDir, withIntermediateDirectories: true)
        let meter = TrainIntervalMeter(start: MonotonicClock().now(), everySteps: 50, everySeconds: rc.logEverySeconds)
        // Rank 0's header (its sgemm measurement takes 0.3 s) comes before the step timer's
        // barrier, so that every rank's clock starts at the first step.
        // Every rank reads where it runs; rank 0 reports all of them (header and run_start).
        var mine = RankPlacement.read(rank: rank, threads: threads)
        // Hosts as MPI groups the ranks that share memory, as the shm sum and auto count them.
        mine.node = hostLeader
        let placements = worldSize == 1 ? [mine] : try comm.allGather(String(decoding: try JSONEncoder().encode(mine), as: UTF8.self))
            .map { try JSONDecoder().decode(RankPlacement.self, from: Data($0.utf8)) }
        let report = PlacementReport(placements)
        let progress = rank == 0 ? try startLog(loader, placement: report) : nil
        let timer = try StepTimer(rank: rank, worldSize: worldSize, diagnose: rc.train.diagnoseImbalance,
                                  logDirectory: rc.train.stepTimeLog ? rc.runDir + "/step-times" : nil, comm: comm,
                                  quota: mine.quota)
        let step = TrainStep(net: net, optimizer: optimizer, comm: comm, reducer: reducer, timer: timer, seed: rc.train.seed)
        let parts = RunParts(loader: loader, iterator: iterator, textBatch: textBatch, cache: cache,
                             rowFloats: textBatch.capacity * net.config.bert.hiddenSize, step: step, timer: timer, meter: meter)
        parts.progress = progress
        parts.placement = report
        // Every rank has passed StopSignal.install() (the command's first step) and the
        // collectives above: a launcher may pass stop signals on now.
        if rank == 0 { RunStatusFile.writeRunning() }
        return parts
    }

    func openBertCache() throws -> BertCache.Reader {
        let key = BertCache.key(net: net, store: store, text: text, storeFingerprint: state.storeFingerprint)
        if !BertCache.isValid(store, key: key) {
            say("bert cache: encoding every sample's [MASK] row once (BERT in eval mode) into \(BertCache.directory(store))")
            try BertCache.build(net: net, store: store, text: text, comm: comm, key: key, say: say)
        } else {
            say("bert cache: using \(BertCache.directory(store))")
        }
        return try BertCache.Reader(store: store, key: key, memoryMB: config.data.cacheMemoryMB)
    }

    /// How the ranks sum gradients, with the bucket size and why `auto` chose it (nil on one rank).
    var gradientSumLine: String? {
        reducer.map { "\($0.summary), buckets of \(config.train.bucketMB) MiB" + (allReduceWhy.map { " (\($0))" } ?? "") }
    }

    /// Rank 0: config.yaml, the metrics log's run_start, the header; returns the progress display.
    func startLog(_ loader: StoreLoader, placement: PlacementReport) throws -> ProgressReporter {
        let rc = config
        let blas = BLASReport.measure(seconds: 0.3)   // rank 0's kernel and sgemm rate, in the header and run_start
        try? yaml.write(toFile: rc.runDir + "/config.yaml", atomically: true, encoding: .utf8)
        log = try MetricsLog(runDirectory: rc.runDir)
        try log?.runStart(run: (rc.runDir as NSString).lastPathComponent, phase: rc.task.rawValue, worldSize: worldSize,
                          epochs: rc.train.epochs, stepsPerEpoch: loader.stepsPerEpoch, batchSize: rc.train.globalBatch,
                          resumedFromEpoch: state.step > 0 ? state.cursorEpoch + 1 : nil,
                          config: (try? LogJSON.from(rc)) ?? .object([:]),
                          versions: ["skesl": skeslCodeVersion, "openblas": blasConfig], blas: blas, placement: placement,
                          gradientSum: gradientSumLine)
        for dst in copiesCompletedOnResume {
            try log?.checkpoint(epoch: state.epochOfLastStep, step: state.step, path: dst, reason: CheckpointReason(copy: dst))
        }
        let progress = ProgressReporter(options: ProgressOptions(totalEpochs: rc.train.epochs, stepsPerEpoch: loader.stepsPerEpoch,
                                                                 plainEverySeconds: rc.logEverySeconds))
        say("\(rc.task.rawValue): \(loader.count) samples, \(loader.stepsPerEpoch) steps/epoch of \(rc.train.globalBatch) samples, \(worldSize) rank(s) x \(threads) thread(s), \(net.layout.trainableCount) trainable parameters")
        say(blas.line)
        say("placement: " + placement.summary)
        if let g = gradientSumLine { say("gradient sum: " + g) }
        return progress
    }

    /// Forward and backward of every micro-batch of the next step, and the gradient sum over
    /// ranks. Nil when the data has ended (at a step boundary).
    func computeStep(_ p: RunParts, resumed: Bool) throws -> ComputedStep? {
        let rc = config, A = rc.train.microBatches
        p.step.begin(step: state.step + 1)
        var c = ComputedStep(epoch: state.cursorEpoch, after: LoaderCursor(epoch: state.cursorEpoch, position: state.cursorPosition), samples: 0)
        for micro in 0..<A {
            guard let b = try p.iterator.next() else {
                if micro == 0 { return nil }
                throw TrainingError("the data ended inside a step (micro-batch \(micro) of \(A))")
            }
            c.epoch = b.epoch; c.after = b.cursorAfterStep; c.samples = b.globalStepSamples
            p.step.noteSkipped(b.skipped)
            let last = micro == A - 1
            guard b.count > 0 else { try p.step.emptyMicroBatch(last: last); continue }
            if let cache = p.cache {
                try text.fillFromCache(p.textBatch, rows: p.cacheRows, from: b, cache: cache, seed: rc.train.seed, epoch: b.epoch)
            } else {
                try text.fill(p.textBatch, from: b, seed: rc.train.seed, epoch: b.epoch)
            }
            try p.step.microBatch(TextPipeline.batch(p.textBatch, b), globalSamples: c.samples, epoch: b.epoch, last: last,
                                  bertRows: p.cache == nil ? nil : UnsafePointer(p.cacheRows))
        }
        StallInjection.check(step: state.step + 1, rank: rank, resumed: resumed)
        FaultInjection.check(step: state.step + 1, rank: rank)
        try p.step.reduceGradients()
        if let r = reducer {
            commExposed += r.lastStep.exposedSeconds
            commTotal += r.lastStep.communicationSeconds
        }
        return c
    }

    /// A non-finite loss or prediction: every rank fails in this step, before any update.
    func failNonFinite(_ a: TrainStep.Agreement, _ c: ComputedStep, started: Double) throws -> Never {
        if !a.localNonFinite.isEmpty {
            Log.rank(rank, "non-finite prediction at step \(state.step + 1) (epoch \(c.epoch)) for samples \(a.localNonFinite.prefix(20).map(String.init).joined(separator: ", "))", level: .error)
        }
        let msg = "loss is not finite at step \(state.step + 1) (epoch \(c.epoch)); the parameters were not updated; the last good checkpoint is \(lastCheckpoint ?? "none")" + (rank == 0 && a.localNonFinite.isEmpty ? "" : "; see the sample ids above")
        try? log?.runEnd(status: .failed, epochs: state.epochsCompleted, steps: state.step, elapsedSeconds: MonotonicClock().now() - started, message: msg)
        if rank == 0 { RunStatusFile.write(.failed) }
        // The first rank to abort ends the job, so wait until rank 0 has recorded the failure.
        if worldSize > 1 { try? comm.barrier() }
        throw TrainingError(msg)
    }

    /// After the update: the state, the displays, and an epoch's end or an interval checkpoint.
    func commitStep(_ p: RunParts, _ c: ComputedStep, _ a: TrainStep.Agreement, rates: [String: Double]) throws {
        let rc = config, G = rc.train.globalBatch
        state.step += 1; p.stepsThisRun += 1
        state.cursorEpoch = c.after.epoch; state.cursorPosition = c.after.position
        p.lastLoss = a.loss
        p.epochLossSum += a.loss * Double(c.samples); p.epochSamples += c.samples
        let epochStep = c.epoch == c.after.epoch ? (c.after.position + G - 1) / G : p.loader.stepsPerEpoch
        // Every rank knows whether rank 0 writes a checkpoint after this step (an epoch's
        // end or the interval); a sharded optimiser's moments are gathered for it first.
        let epochEnded = c.after.epoch != c.epoch
        let intervalDue = rc.checkpoint.everySteps > 0 && state.step % rc.checkpoint.everySteps == 0
        if epochEnded || intervalDue { try p.step.gatherOptimizerState() }
        if rank == 0 {
            p.progress?.step(epoch: c.epoch + 1, epochStep: epochStep, samples: c.samples, loss: a.loss, lr: rates)
            p.meter.add(samples: c.samples, loss: a.loss, skipped: a.skipped)
            try logInterval(p, epoch: c.epoch, epochStep: epochStep, rates: rates, force: false)
        }
        if epochEnded {
            state.epochsCompleted = c.after.epoch
            if rank == 0 { try logInterval(p, epoch: c.epoch, epochStep: epochStep, rates: rates, force: true) }
            try endEpoch(p, epoch: c.epoch)
        } else if intervalDue && rank == 0 {
            try writeCheckpoint(reason: .interval)
        }
    }

    /// Rank 0: a train record when the interval is due (or, `force`, at an epoch's end).
    func logInterval(_ p: RunParts, epoch: Int, epochStep: Int, rates: [String: Double], force: Bool) throws {
        let now = MonotonicClock().now()
        guard force ? !p.meter.isEmpty : p.meter.due(now: now) else { return }
        try log?.write(.train(p.meter.take(now: now, wallTime: Date().timeIntervalSince1970, epoch: epoch + 1, step: state.step,
                                           epochStep: epochStep, lr: rates)))
    }

    /// An epoch's end: the summary line, evaluation (fine-tuning), the epoch checkpoint.
    func endEpoch(_ p: RunParts, epoch: Int) throws {
        var summary = String(format: "epoch %d done: train loss %.4f (mean over the epoch's samples this run)",
                             epoch + 1, p.epochLossSum / Double(max(p.epochSamples, 1)))
        p.epochLossSum = 0; p.epochSamples = 0
        var newBest = false
        if config.task == .finetune && (epoch + 1) % config.train.evalEveryEpochs == 0 {
            let e = try evaluateEpoch(epoch)
            summary += e.summary
            newBest = e.newBest
        }
        if rank == 0 {
            p.progress?.endEpoch(summary: summary)
            try endOfEpochCheckpoint(epoch: epoch + 1, newBest: newBest)
        }
    }

    /// Valid and test predictions, their records, and the best epoch by train.selection
    /// (Selection.swift; the reported metric stays the MAE).
    func evaluateEpoch(_ epoch: Int) throws -> (summary: String, newBest: Bool) {
        let rc = config
        let valid = try evaluate(split: rc.data.validSplit)
        let test = try evaluate(split: rc.data.testSplit)
        if rank == 0 {
            try log?.eval(epoch: epoch + 1, split: "valid", loss: valid.loss, samples: valid.predictions.count, metrics: valid.metrics)
            try log?.eval(epoch: epoch + 1, split: "test", loss: test.loss, samples: test.predictions.count, metrics: test.metrics)
        }
        var summary = String(format: ", valid MAE %.4f, test MAE %.4f", valid.loss, test.loss)
        let criterion = SelectionLoss.value(valid, config: rc.train.selection, seed: rc.train.seed, epoch: epoch)
        if rc.train.selection.loss != .sampleMean { summary += String(format: ", valid \(rc.train.selection.loss.rawValue) %.4f", criterion) }
        guard SelectionLoss.improves(criterion, over: state.bestValidLoss) else { return (summary, false) }
        state.bestValidLoss = criterion
        state.bestEpoch = epoch
        return (summary + " (best)", true)
    }

    /// The final checkpoint (unless the last step wrote one), the step-time summary, run_end.
    func finishRun(_ p: RunParts, status: RunStatus, started: Double) throws -> RunSummary {
        try p.step.gatherOptimizerState()   // a collective; cheap once per run
        if rank == 0 && state.step > 0 && !lastCheckpointIsCurrent {
            try writeCheckpoint(reason: CheckpointReason(endOf: status))
        }
        if worldSize > 1 { try comm.barrier() }
        p.progress?.finish()
        var stepTimes = try p.timer.summary(comm)
        stepTimes.diagnosis = stepTimes.diagnosis(placement: p.placement)
        if p.timer.steps > 0 { try log?.write(.stepTimes(stepTimes)); say(stepTimes.text) }
        if !runEndWritten {
            try log?.runEnd(status: status, epochs: state.epochsCompleted, steps: state.step,
                            elapsedSeconds: MonotonicClock().now() - started, bestEpoch: state.bestEpoch >= 0 ? state.bestEpoch + 1 : nil,
                            message: commMessage(stepSeconds: p.stepSeconds))
            if rank == 0 { RunStatusFile.write(status) }
            runEndWritten = true
        }
        log?.close()
        say("\(status.rawValue): \(state.step) steps, \(state.epochsCompleted) epochs" + (lastCheckpoint.map { ", checkpoint \($0)" } ?? ""))
        if let m = commMessage(stepSeconds: p.stepSeconds) { say(m) }
        let loaderCost = p.iterator.fillCost
        if rank == 0 && p.stepSeconds > 0 && loaderCost.samples > 0 {
            // What the prefetch thread costs when it shares the training thread's core.
            say(String(format: "data loader: %.1f µs CPU per sample, %.1f%% of %.1f s of steps",
                       1e6 * loaderCost.cpuSeconds / Double(loaderCost.samples), 100 * loaderCost.cpuSeconds / p.stepSeconds, p.stepSeconds))
        }
        return RunSummary(status: status, steps: state.step, epochsCompleted: state.epochsCompleted, lastCheckpoint: lastCheckpoint,
                          bestEpoch: state.bestEpoch, finalLoss: p.lastLoss)
    }
}
