// Bucketed gradient all-reduce that overlaps communication with backward.
//
// The backward pass marks parts of the flat gradient buffer as final
// (`markReady`) while it keeps computing earlier layers; each bucket that
// becomes complete is summed over all ranks right away, and `finish()` waits for
// the rest and leaves the buffer averaged over the ranks.
//
// Open MPI here has no asynchronous progress thread: a non-blocking
// MPI_Iallreduce only advances while some thread is inside an MPI call. So the
// reductions run on a communication thread of their own, on a duplicated
// communicator (collectives of the main thread, e.g. a loss all-reduce, never
// interleave with them). Three ways to progress the reductions, two of them on that
// thread (train.allreduce; docs/cluster.md has the figures):
//   .poll    — (default) starts MPI_Iallreduce for every ready bucket and polls
//              MPI_Test, yielding the core between polls: backward keeps its CPU;
//   .thread  — runs one blocking MPI_Allreduce per bucket, in order (Open MPI
//              spins inside it, competing with backward for the core);
//   .deferred — no thread, everything is reduced inside finish() (no overlap; used
//              automatically when MPI does not provide MPI_THREAD_MULTIPLE).
// A fourth, .shm, does without MPI on each host: the ranks sum each other's gradients in
// shared memory on backward's own thread (SharedMemoryEngine.swift).
// Buckets are reduced in index order on every rank whatever order they become
// ready in, because MPI needs every rank to issue collectives in the same order.
//
// With a ShardLayout (train.shardOptimizer) each bucket is reduce-scattered instead
// (MPI_Ireduce_scatter / MPI_Reduce_scatter): after finish() only this rank's shard of
// the buffer holds the sum over ranks; the rest keeps this rank's own gradients, which the
// sharded optimiser never reads. Same bytes on the wire per rank as half an all-reduce.
import COpenMPI
import CShim
import Foundation

public final class GradientReducer: @unchecked Sendable {
    /// Config files name a case by its raw value (train.allreduce; SKESLTraining's ConfigChoice).
    public enum Progress: String, Sendable, CaseIterable {
        case thread, poll, deferred
        /// Sums in host shared memory, MPI only between hosts (SharedMemoryEngine).
        case shm
    }

    /// Timings of the last finished step.
    public struct StepTiming: Sendable {
        /// Wall time during which some bucket was being reduced.
        public var communicationSeconds = 0.0
        /// Time finish() waited for reductions: the communication backward did not hide.
        public var exposedSeconds = 0.0
        /// Share of the communication hidden behind backward (1 = all of it).
        public var overlap: Double {
            communicationSeconds > 0 ? max(0, min(1, 1 - exposedSeconds / communicationSeconds)) : 1
        }
    }

    /// Default bucket size, as PyTorch DDP's.
    public static let defaultBucketBytes = 25 * 1_048_576

    // The communication thread holds a strong reference to the engine, never to this
    // object: when the last owner drops the reducer, deinit stops the thread and waits
    // for it while the engine (everything the thread touches) is still alive. A thread
    // that captured this object itself would read it after its deinit had begun.
    private let engine: ReductionEngine

    public var layout: BucketLayout { engine.layout }
    public var average: Bool { engine.average }
    public var progress: Progress { engine.progress }
    public var buckets: [Range<Int>] { (0..<layout.bucketCount).map(layout.range(ofBucket:)) }
    public var worldSize: Int { engine.worldSize }
    public var lastStep: StepTiming { engine.lastStep }
    /// This rank's shard when the buckets are reduce-scattered; nil when all-reduced.
    public var shard: Range<Int>? { engine.shards?.shard(engine.rank) }
    public var shards: ShardLayout? { engine.shards }
    /// How the sum runs, for run headers: the mode, and for shm the hosts and ranks per host.
    public var summary: String { engine.summary }

    /// `gradients` must stay valid (and not move) while the reducer lives.
    /// `bucketBytes` is rounded down to whole Floats (at least one).
    public init(communicator: Communicator, gradients: UnsafeMutablePointer<Float>, count: Int,
                bucketBytes: Int = GradientReducer.defaultBucketBytes, average: Bool = true,
                progress: Progress = .poll, shards: ShardLayout? = nil) throws {
        try GradientReducer.check(count: count, bucketBytes: bucketBytes, shards: shards, ranks: communicator.size)
        if progress == .shm {
            engine = try SharedMemoryEngine(communicator: communicator, gradients: gradients, count: count,
                                            bucketBytes: bucketBytes, average: average, shards: shards)
        } else {
            engine = try ReducerEngine(communicator: communicator, gradients: gradients, count: count,
                                       bucketBytes: bucketBytes, average: average, progress: progress, shards: shards)
        }
    }

    /// The shared-memory sum with the gradient buffer in shared memory (zero-copy): backward
    /// computes into `gradientStorage`, which stays valid while the reducer lives. Collective.
    public init(sharedMemoryOn communicator: Communicator, count: Int, bucketBytes: Int = GradientReducer.defaultBucketBytes,
                average: Bool = true, shards: ShardLayout? = nil) throws {
        try GradientReducer.check(count: count, bucketBytes: bucketBytes, shards: shards, ranks: communicator.size)
        engine = try SharedMemoryEngine(communicator: communicator, gradients: nil, count: count,
                                        bucketBytes: bucketBytes, average: average, shards: shards)
    }

    /// The arguments both initialisers take, checked once for both engines.
    private static func check(count: Int, bucketBytes: Int, shards: ShardLayout?, ranks: Int) throws {
        if let sh = shards, sh.count != count || sh.parts != ranks {
            throw DistributedError("GradientReducer: shard layout of \(sh.count) elements in \(sh.parts) parts does not fit "
                + "\(count) gradient elements on \(ranks) ranks")
        }
        guard count >= 0 else { throw DistributedError("GradientReducer: negative element count \(count)") }
        guard bucketBytes >= MemoryLayout<Float>.stride else {
            throw DistributedError("GradientReducer: bucket size \(bucketBytes) bytes is smaller than one Float")
        }
    }

    /// Where backward must write the gradients: nil unless built with `sharedMemoryOn:`.
    public var gradientStorage: UnsafeMutablePointer<Float>? {
        (engine as? SharedMemoryEngine).flatMap { $0.inPlace ? $0.gradients : nil }
    }

    deinit { engine.close() }

    /// Gradient elements `range` of the buffer are final for this step.
    /// Ranges may come in any order and split buckets anyhow; each element must
    /// be marked exactly once per step.
    public func markReady(_ range: Range<Int>) throws { try engine.markReady(range) }

    /// All of bucket i is final.
    public func bucketReady(_ i: Int) throws {
        guard (0..<layout.bucketCount).contains(i) else {
            throw DistributedError("bucketReady: no bucket \(i) (there are \(layout.bucketCount))")
        }
        try markReady(layout.range(ofBucket: i))
    }

    /// Waits until every bucket is summed over the ranks (and averaged), then
    /// readies the reducer for the next step. Throws when backward left some
    /// elements unmarked or an MPI call failed.
    public func finish() throws { try engine.finish() }

    /// Stops the communication thread and frees the duplicated communicator.
    /// Called by deinit; call it before Communicator.finalize().
    public func close() { engine.close() }
}

/// What GradientReducer drives: the MPI engine below or the shared-memory one.
protocol ReductionEngine: AnyObject, Sendable {
    var layout: BucketLayout { get }
    var average: Bool { get }
    var progress: GradientReducer.Progress { get }
    var worldSize: Int { get }
    var rank: Int { get }
    var shards: ShardLayout? { get }
    var lastStep: GradientReducer.StepTiming { get }
    var summary: String { get }
    func markReady(_ range: Range<Int>) throws
    func finish() throws
    func close()
}

/// The MPI reducer's state and its communication thread (see GradientReducer).
private final class ReducerEngine: ReductionEngine, @unchecked Sendable {
    typealias Progress = GradientReducer.Progress
    let layout: BucketLayout
    let average: Bool
    let progress: Progress
    var worldSize: Int { comm.size }
    var rank: Int { comm.rank }
    let shards: ShardLayout?
    private(set) var lastStep = GradientReducer.StepTiming()
    var summary: String { "MPI \(shards == nil ? "all-reduce" : "reduce-scatter"), \(progress.rawValue) progress" }

    private let comm: Communicator
    private let gradients: UnsafeMutablePointer<Float>
    private let cond = NSCondition()
    private var coverage: BucketCoverage
    private var next = 0          // next bucket the communication thread starts
    private var done = 0          // buckets reduced and averaged
    private var inFlight = 0      // buckets started, not finished
    private var failure: Error?
    private var commSeconds = 0.0
    private var shuttingDown = false
    private var threadRunning = false
    private var closed = false
    // Reduce-scatter only: this rank's shard, the buffer its sums arrive in (MPI forbids a
    // receive buffer that overlaps the send buffer), and every bucket's per-rank counts,
    // allocated once because a non-blocking collective reads them until it completes.
    private let myShard: Range<Int>
    private let scratch: UnsafeMutablePointer<Float>
    private let bucketCounts: UnsafeMutablePointer<Int32>

    /// `gradients` must stay valid (and not move) while the reducer lives.
    /// `bucketBytes` is rounded down to whole Floats (at least one).
    init(communicator: Communicator, gradients: UnsafeMutablePointer<Float>, count: Int,
                bucketBytes: Int = GradientReducer.defaultBucketBytes, average: Bool = true,
                progress: Progress = .poll, shards: ShardLayout? = nil) throws {
        layout = BucketLayout(count: count, bucketElements: bucketBytes / MemoryLayout<Float>.stride)
        self.shards = shards
        myShard = shards?.shard(communicator.rank) ?? 0..<0
        scratch = .allocate(capacity: max(myShard.count, 1))
        let nb = layout.bucketCount, size = communicator.size
        bucketCounts = .allocate(capacity: max(nb * size, 1))
        if let sh = shards {
            for i in 0..<nb {
                for (r, c) in sh.counts(in: layout.range(ofBucket: i)).enumerated() { bucketCounts[i * size + r] = Int32(c) }
            }
        }
        self.average = average
        self.gradients = gradients
        // Overlap needs a second thread inside MPI; without MPI_THREAD_MULTIPLE reduce in finish().
        precondition(progress != .shm, "the shared-memory sum is SharedMemoryEngine")
        self.progress = communicator.threadLevel == .multiple ? progress : .deferred
        comm = try communicator.duplicate()
        coverage = BucketCoverage(layout: layout)
        if self.progress != .deferred {
            threadRunning = true
            // Strong capture: the thread keeps the engine alive until it has left its loop.
            // The engine does not keep the Thread, so no cycle outlives the loop.
            let t = Thread { [self] in
                if self.progress == .poll { self.pollLoop() } else { self.blockingLoop() }
            }
            t.name = "skesl-grad-allreduce"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    // MARK: backward's side

    /// Gradient elements `range` of the buffer are final for this step.
    /// Ranges may come in any order and split buckets anyhow; each element must
    /// be marked exactly once per step.
    func markReady(_ range: Range<Int>) throws {
        cond.lock(); defer { cond.unlock() }
        guard !closed else { throw DistributedError("markReady on a closed GradientReducer") }
        if !(try coverage.mark(range)).isEmpty { cond.broadcast() }
    }

    /// Waits until every bucket is summed over the ranks (and averaged), then
    /// readies the reducer for the next step. Throws when backward left some
    /// elements unmarked or an MPI call failed.
    func finish() throws {
        let called = monotonicSeconds()
        if progress == .deferred { return try finishDeferred(called: called) }
        cond.lock(); defer { cond.unlock() }
        let nb = layout.bucketCount
        if let unmarked = coverage.unmarkedError() {
            while inFlight > 0 { cond.wait() }
            resetLocked()
            throw unmarked
        }
        while done < nb && failure == nil { cond.wait() }
        if let f = failure {
            while inFlight > 0 { cond.wait() }
            resetLocked()
            throw f
        }
        lastStep = GradientReducer.StepTiming(communicationSeconds: commSeconds, exposedSeconds: monotonicSeconds() - called)
        resetLocked()
    }

    /// Stops the communication thread and frees the duplicated communicator.
    /// Called by deinit; call it before Communicator.finalize().
    func close() {
        cond.lock()
        if closed { cond.unlock(); return }
        closed = true
        shuttingDown = true
        cond.broadcast()
        while threadRunning { cond.wait() }
        cond.unlock()
        try? comm.free()
    }

    deinit { scratch.deallocate(); bucketCounts.deallocate() }

    // MARK: communication thread

    private func resetLocked() {
        coverage.reset()
        next = 0; done = 0; failure = nil; commSeconds = 0
    }

    /// The next bucket in order, when it is ready and nothing failed.
    private var nextStartable: Bool { failure == nil && next < layout.bucketCount && coverage.isComplete(next) }

    private func blockingLoop() {
        cond.lock()
        while true {
            while !shuttingDown && !nextStartable { cond.wait() }
            if shuttingDown { break }
            let i = next
            next += 1; inFlight += 1
            cond.unlock()
            let t0 = monotonicSeconds()
            var error: Error?
            do { try reduceBucket(i) } catch let e { error = e }
            let dt = monotonicSeconds() - t0
            cond.lock()
            inFlight -= 1
            commSeconds += dt
            if let e = error { failure = e } else { done += 1 }
            cond.broadcast()
        }
        threadRunning = false
        cond.broadcast()
        cond.unlock()
    }

    private func pollLoop() {
        var requests: [(bucket: Int, request: MPI_Request?, watch: Int)] = []
        requests.reserveCapacity(layout.bucketCount)
        var starts: [Int] = []
        starts.reserveCapacity(layout.bucketCount)
        var busySince = 0.0
        cond.lock()
        while true {
            if requests.isEmpty { while !shuttingDown && !nextStartable { cond.wait() } }
            if shuttingDown && requests.isEmpty { break }
            starts.removeAll(keepingCapacity: true)
            while nextStartable { starts.append(next); next += 1; inFlight += 1 }
            cond.unlock()

            var error: Error?
            if requests.isEmpty && !starts.isEmpty { busySince = monotonicSeconds() }
            for i in starts {
                let r = layout.range(ofBucket: i)
                var request: MPI_Request? = nil
                let name = shards == nil ? "MPI_Iallreduce" : "MPI_Ireduce_scatter"
                let watch = CollectiveWatchdog.shared.begin("\(name) of \(r.count * 4) bytes (bucket \(i))")
                let rc = shards == nil
                    ? MPI_Iallreduce(skesl_mpi_in_place(), gradients + r.lowerBound, Int32(r.count),
                                     skesl_mpi_float(), skesl_mpi_sum(), comm.comm, &request)
                    : MPI_Ireduce_scatter(gradients + r.lowerBound, receiveBuffer(i), bucketCounts + i * comm.size,
                                          skesl_mpi_float(), skesl_mpi_sum(), comm.comm, &request)
                if rc != 0 {
                    CollectiveWatchdog.shared.end(watch)
                    error = MPIError(call: name, code: rc, message: MPIError.errorString(rc))
                    break
                }
                requests.append((i, request, watch))
            }
            var finished = 0
            if error == nil, !requests.isEmpty {
                var flag: Int32 = 0
                let rc = MPI_Test(&requests[0].request, &flag, skesl_mpi_status_ignore())
                if rc != 0 {
                    error = MPIError(call: "MPI_Test", code: rc, message: MPIError.errorString(rc))
                } else if flag != 0 {
                    CollectiveWatchdog.shared.end(requests[0].watch)
                    settle(requests[0].bucket)
                    requests.removeFirst()
                    finished = 1
                } else {
                    sched_yield()
                }
            }
            cond.lock()
            done += finished
            inFlight -= finished
            if requests.isEmpty && (finished > 0 || error != nil) { commSeconds += monotonicSeconds() - busySince }
            if let e = error {
                // A failed MPI call leaves the job unusable; stop tracking the requests.
                failure = e
                inFlight = 0
                requests.removeAll()
            }
            if finished > 0 || error != nil { cond.broadcast() }
        }
        threadRunning = false
        cond.broadcast()
        cond.unlock()
    }

    private func finishDeferred(called: Double) throws {
        cond.lock()
        let nb = layout.bucketCount
        let unmarked = coverage.unmarkedError()
        resetLocked()
        cond.unlock()
        if let u = unmarked { throw u }
        for i in 0..<nb { try reduceBucket(i) }
        let t = monotonicSeconds() - called
        lastStep = GradientReducer.StepTiming(communicationSeconds: t, exposedSeconds: t)
    }

    private func reduceBucket(_ i: Int) throws {
        let r = layout.range(ofBucket: i)
        if shards == nil {
            try comm.allReduce(gradients + r.lowerBound, count: r.count, .sum)
        } else {
            try comm.call("MPI_Reduce_scatter", bytes: r.count * 4) {
                MPI_Reduce_scatter(gradients + r.lowerBound, receiveBuffer(i), bucketCounts + i * comm.size,
                                   skesl_mpi_float(), skesl_mpi_sum(), comm.comm)
            }
        }
        settle(i)
    }

    /// This rank's part of bucket i (empty when the bucket misses its shard).
    private func myPart(_ i: Int) -> Range<Int> { layout.range(ofBucket: i).clamped(to: myShard) }

    /// Where bucket i's sums for this rank arrive: its place in the scratch shard.
    private func receiveBuffer(_ i: Int) -> UnsafeMutablePointer<Float> {
        let part = myPart(i)
        return scratch + (part.isEmpty ? 0 : part.lowerBound - myShard.lowerBound)
    }

    /// Bucket i's reduction has completed: a reduce-scatter's sums go to their place in
    /// the gradient buffer; then sum to mean.
    private func settle(_ i: Int) {
        guard shards != nil else { return scale(i) }
        let part = myPart(i)
        guard !part.isEmpty else { return }
        (gradients + part.lowerBound).update(from: receiveBuffer(i), count: part.count)
        scale(part)
    }

    /// Sum to mean. A division (not a multiply by 1/size) so the result equals
    /// dividing one whole-buffer all-reduce, bit for bit.
    private func scale(_ i: Int) { scale(layout.range(ofBucket: i)) }

    private func scale(_ r: Range<Int>) {
        guard average, comm.size > 1 else { return }
        let p = gradients + r.lowerBound
        let d = Float(comm.size)
        for k in 0..<r.count { p[k] = p[k] / d }
    }
}
