// Background prefetching: a thread fills batches from a fixed pool (prefetch depth + 1,
// so memory is bounded by batch size and depth) and hands them over through a bounded
// queue. A batch returned by next() stays valid until the following next() call.
import Foundation
import SKESLHDF5

public final class BatchIterator: @unchecked Sendable {
    // The prefetch thread holds a strong reference to the queue, never to this object:
    // when the consumer drops the iterator (after .end, mid-epoch, after an error), deinit
    // stops the thread and waits for it while the queue it touches is still alive. A
    // thread that captured the iterator itself would read it after its deinit had begun.
    private let queue: PrefetchQueue

    public var loader: StoreLoader { queue.loader }
    public var rank: Int { queue.rank }
    public var worldSize: Int { queue.worldSize }
    /// Bytes of the batch pool: the iterator's memory beyond HDF5's small caches.
    public var poolBytes: Int { queue.poolBytes }
    /// CPU time the prefetch thread spent filling batches, and the samples it filled: the
    /// loader's cost, which a prefetch thread sharing a core with training adds to the step.
    /// Both read at one moment, so that their quotient is the CPU time per sample so far.
    public var fillCost: (cpuSeconds: Double, samples: Int) { queue.fillCost }

    init(loader: StoreLoader, rank: Int, worldSize: Int, cursor: LoaderCursor, untilEpoch: Int?) {
        queue = PrefetchQueue(loader: loader, rank: rank, worldSize: worldSize, cursor: cursor, untilEpoch: untilEpoch)
    }

    deinit { queue.close() }

    /// The next micro-batch of this rank, or nil after the last epoch. A batch may hold
    /// zero samples (a short last step split over many ranks): ranks stay in lockstep.
    public func next() throws -> StoreBatch? { try queue.next() }

    /// Stops the thread and waits for it. Safe to call more than once.
    public func close() { queue.close() }
}

/// The batch pool, the hand-over queue and the prefetch thread (see BatchIterator).
private final class PrefetchQueue: @unchecked Sendable {
    private enum Item { case batch(StoreBatch), failure(Error), end }

    let loader: StoreLoader
    let rank: Int, worldSize: Int
    private let cond = NSCondition()
    private var free: [StoreBatch]
    private var ready: [Item] = []
    private var held: StoreBatch?
    private var stopping = false
    private var finished = false
    private var running = true
    private var threadDone = false

    init(loader: StoreLoader, rank: Int, worldSize: Int, cursor: LoaderCursor, untilEpoch: Int?) {
        self.loader = loader; self.rank = rank; self.worldSize = worldSize
        free = (0...loader.config.prefetchDepth).map { _ in loader.makeBatch(worldSize: worldSize) }
        poolBytes = free.count * free[0].bytes
        // Strong capture: the thread keeps the queue alive until it has said it is done.
        // The queue does not keep the Thread, so nothing outlives the thread's body.
        let t = Thread { [self] in
            hdf5SilenceErrorsOnThisThread()
            self.produce(cursor: cursor, untilEpoch: untilEpoch)
            // Only now has the thread dropped its references to the loader (and its HDF5
            // handles): close() waits for this, so handles are never closed on this thread
            // after the consumer has moved on.
            self.cond.lock(); self.threadDone = true; self.cond.broadcast(); self.cond.unlock()
        }
        t.name = "skesl-prefetch"
        t.start()
    }

    let poolBytes: Int

    var fillCost: (cpuSeconds: Double, samples: Int) { cond.lock(); defer { cond.unlock() }; return (cpuSeconds, samplesFilled) }
    private var cpuSeconds = 0.0, samplesFilled = 0

    private static func threadCPUTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    private func produce(cursor: LoaderCursor, untilEpoch: Int?) {
        let cfg = loader.config
        let g = cfg.globalBatchSize
        var epoch = cursor.epoch, start = cursor.position
        var pos = start
        outer: while untilEpoch.map({ epoch < $0 }) ?? true {
            let left = loader.count - pos
            if left <= 0 || (cfg.dropRemainder && left < g) { epoch += 1; start = 0; pos = 0; continue }
            let stepRange = pos..<min(pos + g, loader.count)
            let after = stepRange.upperBound >= loader.count || (cfg.dropRemainder && loader.count - stepRange.upperBound < g)
                ? LoaderCursor(epoch: epoch + 1, position: 0) : LoaderCursor(epoch: epoch, position: stepRange.upperBound)
            for micro in 0..<cfg.microBatches {
                cond.lock()
                while free.isEmpty && !stopping { cond.wait() }
                if stopping { cond.unlock(); break outer }
                let b = free.removeLast()
                cond.unlock()
                let positions = loader.positions(of: stepRange, rank: rank, worldSize: worldSize, micro: micro)
                let c0 = PrefetchQueue.threadCPUTime()
                do { try loader.fill(b, epoch: epoch, positions: positions) } catch {
                    push(.failure(error)); return
                }
                let spent = PrefetchQueue.threadCPUTime() - c0
                cond.lock(); cpuSeconds += spent; samplesFilled += b.count; cond.unlock()
                b.epoch = epoch; b.step = (pos + g - 1) / g; b.micro = micro; b.microBatches = cfg.microBatches
                b.positions = positions; b.globalStepSamples = stepRange.count; b.cursorAfterStep = after
                push(.batch(b))
            }
            pos = stepRange.upperBound
        }
        push(.end)
    }

    private func push(_ item: Item) {
        cond.lock()
        ready.append(item)
        if case .batch = item {} else { running = false }
        cond.broadcast()
        cond.unlock()
    }

    func next() throws -> StoreBatch? {
        cond.lock(); defer { cond.unlock() }
        if let h = held { free.append(h); held = nil; cond.broadcast() }
        if finished { return nil }
        while ready.isEmpty { cond.wait() }
        switch ready.removeFirst() {
        case .batch(let b): held = b; return b
        case .failure(let e): finished = true; throw e
        case .end: finished = true; return nil
        }
    }

    func close() {
        cond.lock()
        stopping = true
        cond.broadcast()
        // The producer ends by pushing .end or .failure, or by seeing `stopping`.
        while running || !threadDone {
            if !ready.isEmpty, free.isEmpty {
                // Give back queued batches so a producer waiting for one can see `stopping`.
                for case .batch(let b) in ready { free.append(b) }
                ready.removeAll { if case .batch = $0 { return true }; return false }
                cond.broadcast()
            }
            if !cond.wait(until: Date().addingTimeInterval(0.05)) { continue }
        }
        finished = true
        cond.unlock()
    }
}
