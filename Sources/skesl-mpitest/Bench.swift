// Benchmarks (figures, no assertions): run with a release build, e.g.
//   mpirun -np 2 .build/release/skesl-mpitest bench-allreduce
import COpenBLAS
import Foundation
import SKESLDistributed

private func now() -> Double { Date().timeIntervalSince1970 }

func benchAllReduce(_ world: Communicator, _ o: Options) throws {
    let sizes = o.doubles("sizes-mb", [1, 2, 4, 8, 16, 32, 64, 100])
    let budget = o.double("seconds", 0.3)
    let repeats = o.int("repeats", 5)
    if world.rank == 0 {
        print("all-reduce of Float32, \(world.size) ranks, median of \(repeats) timings of ~\(budget) s each")
        print("size_MB  ms_median  ms_best  algbw_MB/s(median)  busbw_MB/s(median)")
    }
    for mb in sizes {
        let count = Int(mb * 1_048_576) / 4
        var buffer = [Float](repeating: 1, count: count)
        try world.allReduce(&buffer, .sum)  // warm-up (connections, pages)
        var times: [Double] = []
        for _ in 0..<repeats {
            try world.barrier()
            var iters = 0
            let t0 = now()
            // Rank 0 decides when to stop so every rank runs the same number of calls.
            while true {
                try world.allReduce(&buffer, .sum)
                iters += 1
                let stop = try world.broadcast(world.rank == 0 && now() - t0 > budget ? 1 : 0)
                if stop == 1 { break }
            }
            times.append((now() - t0) / Double(iters))
        }
        times.sort()
        let t = times[times.count / 2]
        let s = Double(world.size)
        if world.rank == 0 {
            // Bus bandwidth: the bytes each rank moves in a ring all-reduce, 2(s-1)/s of the message.
            print(String(format: "%7.1f  %9.2f  %7.2f  %18.0f  %18.0f", mb, t * 1000, times[0] * 1000,
                         mb / t, mb / t * 2 * (s - 1) / s))
        }
    }
}

private func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

/// A backward pass stand-in: sgemm work split into chunks; after each chunk the
/// next slice of the gradient buffer (from the end) is marked ready. Each round
/// times compute alone, communication alone and each progress mode; medians
/// over rounds are printed (this machine is shared and noisy).
func benchOverlap(_ world: Communicator, _ o: Options) throws {
    let mb = o.double("mb", 64)
    let bucketMB = o.double("bucket-mb", 8)
    let steps = o.int("steps", 3)
    let rounds = o.int("rounds", 5)
    let dim = o.int("dim", 384)
    let chunks = o.int("chunks", 32)
    let gemmsPerChunk = o.int("gemms", 4)
    let n = Int(mb * 1_048_576) / 4
    let bucketBytes = Int(bucketMB * 1_048_576)
    let grads = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { grads.deallocate() }
    grads.initialize(repeating: 0.5, count: n)
    var a = [Float](repeating: 0.01, count: dim * dim), b = a, c = a

    func compute(_ chunk: Int, mark: ((Range<Int>) throws -> Void)?) rethrows {
        for _ in 0..<gemmsPerChunk {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(dim), Int32(dim), Int32(dim),
                        1, &a, Int32(dim), &b, Int32(dim), 0, &c, Int32(dim))
        }
        let hi = n - chunk * n / chunks, lo = n - (chunk + 1) * n / chunks
        try mark?(lo..<hi)
    }
    let modes: [GradientReducer.Progress] = [.deferred, .thread, .poll, .shm]
    let reducers = try modes.map {
        try GradientReducer(communicator: world, gradients: grads, count: n, bucketBytes: bucketBytes,
                            average: false, progress: $0)
    }
    var computeT: [Double] = [], commT: [Double] = []
    var stepT = [[Double]](repeating: [], count: modes.count), exposedT = stepT
    for _ in 0..<rounds {
        try world.barrier()
        var t0 = now()
        for _ in 0..<steps { for k in 0..<chunks { compute(k, mark: nil) } }
        computeT.append((now() - t0) / Double(steps))
        // Communication alone: the same buckets back to back.
        try world.barrier()
        t0 = now()
        for _ in 0..<steps { try reducers[0].markReady(0..<n); try reducers[0].finish() }
        commT.append((now() - t0) / Double(steps))
        for (m, r) in reducers.enumerated() {
            var exposed = 0.0
            try world.barrier()
            t0 = now()
            for _ in 0..<steps {
                for k in 0..<chunks { try compute(k, mark: r.markReady) }
                try r.finish()
                exposed += r.lastStep.exposedSeconds
            }
            stepT[m].append((now() - t0) / Double(steps))
            exposedT[m].append(exposed / Double(steps))
        }
    }
    for r in reducers { r.close() }
    guard world.rank == 0 else { return }
    let tc = median(computeT), tr = median(commT)
    print(String(format: "overlap: %d ranks, %.0f MB gradients in %.0f MB buckets, %d chunks of %d sgemm %d^3; "
                 + "medians of %d rounds x %d steps", world.size, mb, bucketMB, chunks, gemmsPerChunk, dim, rounds, steps))
    print(String(format: "compute alone %.1f ms/step, all-reduce alone %.1f ms/step (sum %.1f)", tc * 1000, tr * 1000,
                 (tc + tr) * 1000))
    // hidden_by_step: 1 - (step - compute alone) / all-reduce alone (wall clock, noisy on a busy machine);
    // hidden_by_wait: 1 - finish()'s wait / the deferred mode's wait (measured inside the same steps).
    print("progress  step_ms  finish_wait_ms  hidden_by_step  hidden_by_wait")
    let deferredWait = median(exposedT[0])
    for (m, mode) in modes.enumerated() {
        let ts = median(stepT[m]), wait = median(exposedT[m])
        print(String(format: "%-8@  %7.1f  %14.1f  %13.0f%%  %13.0f%%", mode.rawValue as NSString, ts * 1000, wait * 1000,
                     max(0, min(1, 1 - (ts - tc) / tr)) * 100, max(0, 1 - wait / deferredWait) * 100))
    }
}
