// Benchmarks (figures, no assertions): run with a release build, e.g.
//   mpirun -np 2 .build/release/skesl-mpitest bench-allreduce
import COpenBLAS
import Foundation
import SKESLDistributed

private func now() -> Double { Date().timeIntervalSince1970 }

func benchAllReduce(_ world: Communicator, _ o: Options) throws {
    let sizes = o.doubles("sizes-mb", [1, 2, 4, 8, 16, 32, 64, 100])
    let budget = o.double("seconds", 1.0)
    if world.rank == 0 { print("size_MB  iters  ms_per_allreduce  algbw_MB/s  busbw_MB/s") }
    for mb in sizes {
        let count = Int(mb * 1_048_576) / 4
        var buffer = [Float](repeating: 1, count: count)
        try world.allReduce(&buffer, .sum)  // warm-up (connections, pages)
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
        let t = (now() - t0) / Double(iters)
        let s = Double(world.size)
        if world.rank == 0 {
            let algbw = mb / t
            // Bus bandwidth: bytes each rank must move in a ring all-reduce.
            print(String(format: "%7.1f  %5d  %16.2f  %10.0f  %10.0f", mb, iters, t * 1000, algbw, algbw * 2 * (s - 1) / s))
        }
    }
}

/// A backward pass stand-in: `steps` steps of sgemm work split into chunks; after
/// each chunk the next slice of the gradient buffer (from the end) is marked.
func benchOverlap(_ world: Communicator, _ o: Options) throws {
    let mb = o.double("mb", 64)
    let bucketMB = o.double("bucket-mb", 8)
    let steps = o.int("steps", 4)
    let dim = o.int("dim", 384)
    let chunks = o.int("chunks", 32)
    let gemmsPerChunk = o.int("gemms", 4)
    let n = Int(mb * 1_048_576) / 4
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

    // Compute alone.
    try world.barrier()
    var t0 = now()
    for _ in 0..<steps { for k in 0..<chunks { compute(k, mark: nil) } }
    let computeOnly = (now() - t0) / Double(steps)
    // Communication alone (same buckets, deferred: reduced back to back).
    var commOnly = 0.0
    do {
        let r = try GradientReducer(communicator: world, gradients: grads, count: n,
                                    bucketBytes: Int(bucketMB * 1_048_576), average: false, progress: .deferred)
        try world.barrier()
        t0 = now()
        for _ in 0..<steps { try r.markReady(0..<n); try r.finish() }
        commOnly = (now() - t0) / Double(steps)
        r.close()
    }
    if world.rank == 0 {
        print(String(format: "overlap bench: %d ranks, %.0f MB gradients, %.0f MB buckets, sgemm %d^3 x %d per chunk x %d chunks",
                     world.size, mb, bucketMB, dim, gemmsPerChunk, chunks))
        print(String(format: "compute alone %.1f ms/step, all-reduce alone %.1f ms/step, sum %.1f ms",
                     computeOnly * 1000, commOnly * 1000, (computeOnly + commOnly) * 1000))
        print("progress  step_ms  exposed_ms  comm_ms  hidden_of_comm_alone")
    }
    for progress in [GradientReducer.Progress.deferred, .thread, .poll] {
        let r = try GradientReducer(communicator: world, gradients: grads, count: n,
                                    bucketBytes: Int(bucketMB * 1_048_576), average: false, progress: progress)
        var exposed = 0.0, comm = 0.0
        try world.barrier()
        t0 = now()
        for _ in 0..<steps {
            for k in 0..<chunks { try compute(k, mark: r.markReady) }
            try r.finish()
            exposed += r.lastStep.exposedSeconds; comm += r.lastStep.communicationSeconds
        }
        let step = (now() - t0) / Double(steps)
        r.close()
        let e = exposed / Double(steps), c = comm / Double(steps)
        if world.rank == 0 {
            print(String(format: "%-8@  %7.1f  %10.1f  %7.1f  %6.0f%%", progress.rawValue as NSString,
                         step * 1000, e * 1000, c * 1000, max(0, 1 - (step - computeOnly) / commOnly) * 100))
        }
    }
}
