// The gradient sum in node shared memory (train.allreduce: shm): no MPI progress, no
// communication thread.
//
// Why: the other modes hand the sum to Open MPI, whose non-blocking collectives move only
// while some thread is inside MPI (no asynchronous progress here), so overlap costs a thread
// that competes with backward for a core, and a 16-rank ring needs 30 rounds of every rank's
// progress. On one host the ranks can simply read each other's gradients: every rank maps
// one shared block (SharedSegment.swift) holding
//   - each rank's input: its gradients. The trainer computes them there (the network's
//     gradient buffer is this input: `GradientReducer(sharedMemoryOn:)`, no copy); a caller
//     with a buffer of its own has each bucket copied in as backward finishes it;
//   - the results: one buffer of the whole gradient, where rank l writes part l of every
//     bucket (each bucket is cut into one part per rank, so every bucket's work is shared);
//   - per rank two counters, each on its own cache lines: buckets published (input written)
//     and buckets reduced (its part of the result written), counted from the run's start so
//     they never need resetting.
// Rank l sums part l of bucket b over the ranks' inputs in rank order (the same additions
// on every run: deterministic, and on two ranks a + b, the bits of any all-reduce) once every
// rank has published b; then every rank copies bucket b's parts from the results into its
// gradients once their owners have reduced them. Both happen as early as they can: inside
// markReady on backward's own thread when the other ranks are already there (nothing blocks
// there), and the rest inside finish(), which waits only for what is still missing.
//
// Across hosts (equal ranks per host): after rank l of each host has summed its part over
// its host, the ranks with the same l on every host all-reduce that part with MPI (a
// communicator per l: every core of a host drives its own share of the network traffic),
// inside finish(), then publish it as reduced.
//
// In place, copying a result back overwrites this rank's input: part q of bucket b only after
// rank q has reduced it, i.e. has read part q of every input; the other parts of the bucket
// are other ranks' to read, and copied back only once their owners are done with them.
//
// Why no barrier is needed between steps: a rank writes its input for step s+1 (zeroing the
// gradients, backward) and publishes bucket b of it only after its finish() of step s, which waited until every rank had reduced every bucket of step s,
// i.e. had read everything of step s from this rank's input; and a rank writes a result of
// step s+1 only after every rank published that bucket of step s+1, i.e. after every rank
// had copied the results of step s.
import COpenMPI
import CShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class SharedMemoryEngine: ReductionEngine, @unchecked Sendable {
    let layout: BucketLayout
    let average: Bool
    var progress: GradientReducer.Progress { .shm }
    let worldSize: Int
    let rank: Int
    let shards: ShardLayout?
    private(set) var lastStep = GradientReducer.StepTiming()
    var summary: String {
        "shared memory, \(worldSize / hostSize) host\(worldSize / hostSize == 1 ? "" : "s") x \(hostSize) rank\(hostSize == 1 ? "" : "s")"
            + (cross == nil ? "" : ", MPI between hosts")
    }

    private let host: Communicator
    /// The ranks with this rank's host rank on every host; nil on a single host.
    private let cross: Communicator?
    private let segment: SharedSegment
    /// The caller's gradients; in place (`inPlace`), this rank's input in the shared block.
    let gradients: UnsafeMutablePointer<Float>
    /// Backward writes straight into this rank's input: no copy when a bucket is published.
    let inPlace: Bool
    private let local: Int, hostSize: Int
    private let published: [UnsafeMutablePointer<Int64>]
    private let reduced: [UnsafeMutablePointer<Int64>]
    private let inputs: [UnsafeMutablePointer<Float>]
    private let results: UnsafeMutablePointer<Float>
    /// The elements this rank needs back: its shard under the sharded optimiser, else all.
    private let wanted: Range<Int>
    private let lock = NSLock()
    private var coverage: BucketCoverage
    private var base: Int64 = 0      // buckets of all earlier steps: counters count from the run's start
    private var publishedCount = 0   // this step's buckets published, in index order
    private var summedCount = 0      // this step's buckets whose part is summed over the host
    private var reducedCount = 0     // ... and over the hosts, published as reduced
    private var copiedCount = 0      // this step's buckets copied back into the gradients
    private var workSeconds = 0.0
    private var closed = false

    /// Collective over `communicator`: every rank constructs it, in the same order.
    /// `gradients` nil: the gradient buffer is this rank's input in the shared block
    /// (`gradients` then points there; the caller computes into it, zero-copy).
    init(communicator: Communicator, gradients: UnsafeMutablePointer<Float>?, count: Int,
         bucketBytes: Int, average: Bool, shards: ShardLayout?) throws {
        layout = BucketLayout(count: count, bucketElements: bucketBytes / MemoryLayout<Float>.stride)
        self.average = average
        self.shards = shards
        inPlace = gradients == nil
        worldSize = communicator.size
        rank = communicator.rank
        wanted = shards?.shard(communicator.rank) ?? 0..<count
        host = try communicator.splitByHost()
        local = host.rank
        hostSize = host.size
        let perHost = try communicator.allGather(Int64(hostSize))
        guard Set(perHost).count == 1 else {
            throw DistributedError("train.allreduce=shm needs the same number of ranks on every host; ranks per host here: "
                + "\(perHost.map(String.init).joined(separator: ", ")) (by rank). Place them evenly (mpirun --map-by "
                + "ppr:N:node, or Cluster/launch.sh's default) or use train.allreduce=auto (an MPI sum: deferred on one host, poll across hosts)")
        }
        cross = hostSize < worldSize ? try communicator.split(color: local, key: communicator.rank) : nil

        // The block: counters (two cache-line pairs per rank), then each rank's input, then the results,
        // each starting on a page so that each rank's reservation places its own input's pages.
        let page = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
        func up(_ b: Int) -> Int { (b + page - 1) / page * page }
        let line = 128
        let counterBytes = up(hostSize * 2 * line)
        let inputBytes = up(max(count, 1) * MemoryLayout<Float>.stride)
        let total = counterBytes + hostSize * inputBytes + inputBytes
        let mine = counterBytes + local * inputBytes
        var reserve = [mine..<(mine + inputBytes)]
        if local == 0 { reserve += [0..<counterBytes, (counterBytes + hostSize * inputBytes)..<total] }
        var failure: Error? = nil
        var seg: SharedSegment? = nil
        do { seg = try SharedSegment(host: host, bytes: total, reserve: reserve, purpose: "grad") } catch { failure = error }
        // A failure on one host must stop every host, not leave them waiting in the first step.
        let failedAnywhere = try communicator.allReduce(Int32(failure == nil ? 0 : 1), .max)
        if let f = failure { throw f }
        guard failedAnywhere == 0, let s = seg else {
            throw DistributedError("another host could not set up the shared-memory gradient sum (its ranks' messages say why)")
        }
        segment = s
        let b = s.base
        published = (0..<hostSize).map { (b + $0 * 2 * line).assumingMemoryBound(to: Int64.self) }
        reduced = (0..<hostSize).map { (b + $0 * 2 * line + line).assumingMemoryBound(to: Int64.self) }
        inputs = (0..<hostSize).map { (b + counterBytes + $0 * inputBytes).assumingMemoryBound(to: Float.self) }
        results = (b + counterBytes + hostSize * inputBytes).assumingMemoryBound(to: Float.self)
        self.gradients = gradients ?? inputs[local]
        coverage = BucketCoverage(layout: layout)
    }

    // MARK: backward's side

    func markReady(_ range: Range<Int>) throws {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { throw DistributedError("markReady on a closed GradientReducer") }
        _ = try coverage.mark(range)
        let t0 = monotonicSeconds()
        publish()
        try advance(wait: false)
        workSeconds += monotonicSeconds() - t0
    }

    func finish() throws {
        let called = monotonicSeconds()
        lock.lock(); defer { lock.unlock() }
        guard !closed else { throw DistributedError("finish on a closed GradientReducer") }
        let nb = layout.bucketCount
        if let unmarked = coverage.unmarkedError() {
            resetStep(advanceBase: false)
            throw unmarked
        }
        try advance(wait: true)
        // Every rank has read this rank's input for this step only once all have reduced
        // every bucket; copying back only a shard may not have waited for that.
        wait(reduced, atLeast: base + Int64(nb), what: "every bucket reduced")
        let exposed = monotonicSeconds() - called
        // In flight: the work done inside markReady during backward, plus all of finish().
        lastStep = GradientReducer.StepTiming(communicationSeconds: workSeconds + exposed, exposedSeconds: exposed)
        resetStep(advanceBase: true)
    }

    func close() {
        lock.lock(); closed = true; lock.unlock()
        try? cross?.free()
        try? host.free()
    }

    // MARK: the work

    private func resetStep(advanceBase: Bool) {
        if advanceBase { base += Int64(layout.bucketCount) }
        coverage.reset()
        publishedCount = 0; summedCount = 0; reducedCount = 0; copiedCount = 0; workSeconds = 0
    }

    /// Copies the finished buckets, in index order, into this rank's input and publishes them.
    private func publish() {
        let start = publishedCount
        while publishedCount < layout.bucketCount && coverage.isComplete(publishedCount) {
            if !inPlace {
                let r = layout.range(ofBucket: publishedCount)
                (inputs[local] + r.lowerBound).update(from: gradients + r.lowerBound, count: r.count)
            }
            publishedCount += 1
        }
        if publishedCount > start { skesl_atomic_store_release(published[local], base + Int64(publishedCount)) }
    }

    /// Sums, reduces and copies back every bucket whose inputs are there. `wait: false`
    /// (inside backward): only what needs no waiting and no MPI. `wait: true` (finish): all of it.
    private func advance(wait: Bool) throws {
        try drain(&summedCount, after: published, "published", wait: wait) { i in
            sumPart(i)
            if cross == nil { finishPart(i); reducedCount = i + 1 }
        }
        if let c = cross, wait {
            while reducedCount < summedCount {
                let part = self.part(reducedCount, local)
                if !part.isEmpty { try c.allReduce(results + part.lowerBound, count: part.count, .sum) }
                finishPart(reducedCount)
                reducedCount += 1
            }
        }
        try drain(&copiedCount, after: reduced, "reduced", wait: wait) { copyBack($0) }
    }

    /// Runs `body` on this step's buckets from `count` on, in order, each once every rank's
    /// `counters` have passed it; without `wait`, stops at the first that is not there yet.
    private func drain(_ count: inout Int, after counters: [UnsafeMutablePointer<Int64>], _ what: String, wait: Bool,
                       _ body: (Int) throws -> Void) rethrows {
        while count < layout.bucketCount {
            let need = base + Int64(count) + 1
            if wait { self.wait(counters, atLeast: need, what: "bucket \(count) \(what)") }
            else if !all(counters, atLeast: need) { break }
            try body(count)
            count += 1
        }
    }

    /// Part q of bucket i: the bucket cut into one near-equal run per host rank.
    private func part(_ i: Int, _ q: Int) -> Range<Int> {
        let r = layout.range(ofBucket: i)
        let s = ShardLayout(count: r.count, parts: hostSize).shard(q)
        return (r.lowerBound + s.lowerBound)..<(r.lowerBound + s.upperBound)
    }

    /// This rank's part of bucket i summed over the host's inputs, in host-rank order.
    private func sumPart(_ i: Int) {
        let p = part(i, local)
        guard !p.isEmpty else { return }
        let out = results + p.lowerBound
        out.update(from: inputs[0] + p.lowerBound, count: p.count)
        for q in 1..<max(1, hostSize) {
            let x = inputs[q] + p.lowerBound
            for k in 0..<p.count { out[k] += x[k] }
        }
    }

    /// This rank's part of bucket i is the sum over all ranks: to a mean, then published.
    private func finishPart(_ i: Int) {
        let p = part(i, local)
        if average, worldSize > 1, !p.isEmpty {
            // A division (not a multiply by 1/size), as the MPI engine's, so the two agree bit for bit.
            let out = results + p.lowerBound, d = Float(worldSize)
            for k in 0..<p.count { out[k] = out[k] / d }
        }
        skesl_atomic_store_release(reduced[local], base + Int64(i) + 1)
    }

    /// Bucket i's parts from the results into the gradients, as much as this rank wants.
    private func copyBack(_ i: Int) {
        let r = layout.range(ofBucket: i).clamped(to: wanted)
        guard !r.isEmpty else { return }
        (gradients + r.lowerBound).update(from: results + r.lowerBound, count: r.count)
    }

    private func all(_ counters: [UnsafeMutablePointer<Int64>], atLeast v: Int64) -> Bool {
        counters.allSatisfy { skesl_atomic_load_acquire($0) >= v }
    }

    /// Spins (yielding the core) until every rank's counter reaches v. Under the collective
    /// watchdog, like an MPI collective: a rank that never arrives aborts the job.
    private func wait(_ counters: [UnsafeMutablePointer<Int64>], atLeast v: Int64, what: String) {
        if all(counters, atLeast: v) { return }
        let watch = CollectiveWatchdog.shared.begin("shared-memory gradient sum: waiting for \(what) on every rank of this host")
        defer { CollectiveWatchdog.shared.end(watch) }
        var spins = 0
        while !all(counters, atLeast: v) {
            spins += 1
            if spins < 1000 { sched_yield() } else { usleep(50) }
        }
    }
}
