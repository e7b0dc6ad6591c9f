// The rank's own loops on its T threads (train.threads), beside OpenBLAS's threads for the
// products. Why: with T threads per rank, OpenBLAS speeds up the products, but attention per
// (sample, head), the dropout masks, GELU, LayerNorm and the optimizer stayed on one thread;
// with 2 threads a pretraining step ran 1.70x one thread's, and the cached step 1.21x. Hybrid
// placements (one rank per socket or NUMA node with T threads, issue 11) need every part of
// the step to use the T cores. Sums over rows (LayerNorm's and the biases' parameter
// gradients) split by columns, each column summed over the rows in order as on one thread;
// the gradient norm (one sum over everything) stays on one thread: split, it would change the bits.
//
// Every loop given to the team splits into contiguous chunks, each computed exactly as the
// one-thread loop computes it (no reduction crosses a chunk), so results are bitwise the same
// for any thread count. The caller runs chunk 0 itself and returns only when every chunk is
// done, so the loop's closure and buffers never outlive the call.
//
// The worker threads live as long as the process (one team per process, like OpenBLAS's
// pool): no thread can outlive an owner it refers to, and nothing is torn down while a test
// or a signal handler runs. A loop entered while the team is busy (another thread's loop, or
// a loop inside a loop) runs inline on its caller.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class WorkerTeam: @unchecked Sendable {
    public static let shared = WorkerTeam()

    /// The most threads a team may be given (the caller included).
    public static let maxThreads = 256

    // Allocated once (never moved, never freed: the team lives as long as the process).
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`:
    private var threadCount = 1
    private var grain = WorkerTeam.defaultGrain
    private var started = 0              // worker threads created (ids 1...started)
    private var generation: UInt64 = 0   // one per loop handed out
    private var parts = 0                // chunks of the current loop
    private var job: ((Int) -> Void)? = nil
    private var pending = 0              // chunks 1..<parts not yet finished
    /// Held by the one loop that has the team; others run inline.
    private let claimed = Atomic<Bool>(false)

    private init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
    }

    /// Threads a loop uses, its caller included (1: every loop runs inline).
    public var threads: Int {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return threadCount
    }

    /// Sets the team's size (1 ... maxThreads) and the least elements of a chunk (tests set 1
    /// to split every loop); starts the worker threads it lacks. Threads beyond a smaller
    /// size stay parked. Call it between loops (at set-up), not during one.
    public func setThreads(_ n: Int, grain g: Int = WorkerTeam.defaultGrain) {
        precondition((1...Self.maxThreads).contains(n), "WorkerTeam threads must be 1...\(Self.maxThreads), got \(n)")
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        threadCount = n
        grain = max(1, g)
        while started < n - 1 {
            started += 1
            let id = started
            var t = pthread_t()
            // The worker starts from the loops handed out so far: none of them is its to run.
            let box = Unmanaged.passRetained(WorkerStart(team: self, id: id, seen: generation))
            let rc = pthread_create(&t, nil, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                start.team.work(id: start.id, seen: start.seen)
                return nil
            }, box.toOpaque())
            precondition(rc == 0, "WorkerTeam: pthread_create failed (\(rc))")
            pthread_detach(t)
        }
    }

    /// Elements a chunk holds at least, by default: waking a worker costs microseconds, an
    /// element-wise pass over 16K floats about as much.
    public static let defaultGrain = 16_384

    /// Runs `body` over items 0..<count (each of `itemSize` elements) in contiguous chunks, one
    /// per thread, each of at least the team's grain in elements; `body(range, part)` gets its
    /// chunk and the chunk's index (0 ..< threads), e.g. to pick a scratch buffer of its own.
    /// Returns when every chunk is done.
    public func forEachChunk(_ count: Int, itemSize: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        pthread_mutex_lock(mutex)
        let t = min(threadCount, count, count * max(itemSize, 1) / grain)
        pthread_mutex_unlock(mutex)
        if t <= 1 || !claimed.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
            body(0..<count, 0)
            return
        }
        defer { claimed.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            let chunk = { (i: Int) in body((count * i / t)..<(count * (i + 1) / t), i) }
            pthread_mutex_lock(mutex)
            job = chunk; parts = t; pending = t - 1; generation &+= 1
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
            chunk(0)
            pthread_mutex_lock(mutex)
            while pending > 0 { pthread_cond_wait(done, mutex) }
            job = nil
            pthread_mutex_unlock(mutex)
        }
    }

    /// A worker: waits for each loop, runs its chunk (if the loop has one for it), reports.
    private func work(id: Int, seen first: UInt64) {
        var seen = first
        pthread_mutex_lock(mutex)
        while true {
            while generation == seen { pthread_cond_wait(wake, mutex) }
            seen = generation
            guard id < parts, let run = job else { continue }
            pthread_mutex_unlock(mutex)
            run(id)
            pthread_mutex_lock(mutex)
            pending -= 1
            if pending == 0 { pthread_cond_signal(done) }
        }
    }
}

private final class WorkerStart {
    let team: WorkerTeam, id: Int, seen: UInt64
    init(team: WorkerTeam, id: Int, seen: UInt64) { self.team = team; self.id = id; self.seen = seen }
}

/// The rank's T threads (train.threads): OpenBLAS's for the products, the worker team's for
/// the step's own loops.
public func setComputeThreads(_ n: Int) {
    setBLASThreads(n)
    WorkerTeam.shared.setThreads(n)
}
