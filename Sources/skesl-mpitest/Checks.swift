// The multi-rank checks DistributedTests runs under mpirun.
import Foundation
import SKESLDistributed
import SKESLKernels

private func say(_ world: Communicator, _ text: String) { print("rank \(world.rank)/\(world.size): \(text)") }

private func expect(_ ok: Bool, _ world: Communicator, _ what: @autoclosure () -> String) {
    if !ok { fail("rank \(world.rank)/\(world.size): \(what())") }
}

struct RunConfig: Codable, Equatable {
    var name: String
    var learningRate: Double
    var layers: [Int]
}

func checkCollectives(_ world: Communicator) throws {
    let r = world.rank, s = world.size
    try world.barrier()

    // Broadcast: a float buffer from rank 0, an Int from the last rank.
    var params = [Float](repeating: 0, count: 1000)
    if r == 0 { for i in params.indices { params[i] = Float(i) * 0.25 - 7 } }
    try params.withUnsafeMutableBufferPointer { try world.broadcast($0, root: 0) }
    expect(params.enumerated().allSatisfy { $0.element == Float($0.offset) * 0.25 - 7 }, world,
           "broadcast of Float buffer from rank 0 differs")
    let fromLast = try world.broadcast(r == s - 1 ? 1_000_000_007 + r : -1, root: s - 1)
    expect(fromLast == 1_000_000_007 + s - 1, world, "broadcast of Int from rank \(s - 1) gave \(fromLast)")

    var grown: [Double] = r == 0 ? [1, 2, 3.5] : []
    try world.broadcast(&grown)
    expect(grown == [1, 2, 3.5], world, "array broadcast gave \(grown)")
    let bytes = try world.broadcast(bytes: r == 0 ? [0, 255, 7, 42] : [9])
    expect(bytes == [0, 255, 7, 42], world, "bytes broadcast gave \(bytes)")
    let text = try world.broadcast(r == 0 ? "Grüße ✓ from rank 0" : "")
    expect(text == "Grüße ✓ from rank 0", world, "string broadcast gave \(text)")
    let config = RunConfig(name: "bert-base", learningRate: 3e-5, layers: [12, 4])
    let got = try world.broadcast(json: r == 0 ? config : RunConfig(name: "", learningRate: 0, layers: []))
    expect(got == config, world, "JSON broadcast gave \(got)")

    // A count mismatch is an error on every rank, not a hang.
    var odd = [Float](repeating: 0, count: r == 0 ? 4 : 5)
    do {
        try odd.withUnsafeMutableBufferPointer { try world.broadcast($0, root: 0) }
        expect(s == 1, world, "broadcast with mismatched counts did not throw")
    } catch let e as DistributedError {
        expect(e.message.contains("elements"), world, "unexpected message \(e.message)")
    }

    // All-reduce: sum, max, min over Float, Double, Int64.
    var f = (0..<1000).map { Float($0 % 17) + Float(r) }
    try world.allReduce(&f, .sum)
    let rankSum = s * (s - 1) / 2
    expect(f.enumerated().allSatisfy { $0.element == Float(s * ($0.offset % 17) + rankSum) }, world,
           "Float sum all-reduce wrong: first \(f.prefix(3))")
    var d: [Double] = [Double(r), -Double(r), 0.5 * Double(r)]
    try world.allReduce(&d, .max)
    expect(d == [Double(s - 1), 0, 0.5 * Double(s - 1)], world, "Double max all-reduce gave \(d)")
    var dmin: [Double] = [Double(r), -Double(r)]
    try world.allReduce(&dmin, .min)
    expect(dmin == [0, -Double(s - 1)], world, "Double min all-reduce gave \(dmin)")
    var big: [Int64] = [(1 << 40) + Int64(r), Int64.max / 8]
    try world.allReduce(&big, .sum)
    expect(big == [Int64(s) << 40 + Int64(rankSum), Int64(s) * (Int64.max / 8)], world,
           "Int64 sum all-reduce gave \(big)")
    let m = try world.allReduce(Int64(r * 3), .max)
    expect(m == Int64((s - 1) * 3), world, "scalar max all-reduce gave \(m)")

    // All-gather.
    let ids = try world.allGather(r * 10)
    expect(ids == (0..<s).map { $0 * 10 }, world, "allGather of Int gave \(ids)")
    let chunk: [Float] = [Float(r), Float(r) + 0.5]
    let all = try chunk.withUnsafeBufferPointer { try world.allGather($0) }
    expect(all == (0..<s).flatMap { [Float($0), Float($0) + 0.5] }, world, "allGather of buffers gave \(all)")
    let names = try world.allGather(String(repeating: "x", count: r) + "rank\(r)")
    expect(names == (0..<s).map { String(repeating: "x", count: $0) + "rank\($0)" }, world,
           "allGather of strings gave \(names)")
    try world.barrier()
    say(world, "collectives ok host=\(world.processorName) thread=\(world.threadLevel) addrs=\(interfaceAddresses().joined(separator: ","))")
}

/// Bucketed reducer against one whole-buffer all-reduce, for several bucket
/// sizes, mark orders and steps; result identical on every rank.
func checkReducer(_ world: Communicator, _ o: Options) throws {
    let n = o.int("n", 10_007)
    let bucketSizes = o.doubles("buckets", [1, 7, 100, 1000, 4096, Double(n), Double(2 * n)]).map { Int($0) }
    let steps = o.int("steps", 3)
    let integers = o.flag("integers")
    // --shard: reduce-scatter into contiguous shards (the sharded optimiser), then the
    // shards are all-gathered, so every check below still sees the whole buffer.
    let shards = o.flag("shard") ? ShardLayout(count: n, parts: world.size) : nil
    guard let progress = GradientReducer.Progress(rawValue: o.string("progress", "thread")) else {
        fail("--progress must be thread, poll, deferred or shm")
    }
    let grads = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
    let whole = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
    defer { grads.deallocate(); whole.deallocate() }
    let size = world.size
    var allBitwise = true
    var worstRel = 0.0

    for bucketElements in bucketSizes {
        // --in-place (shm only): the gradients live in the reducer's shared block, as the trainer keeps them.
        let reducer = o.flag("in-place")
            ? try GradientReducer(sharedMemoryOn: world, count: n, bucketBytes: bucketElements * 4, shards: shards)
            : try GradientReducer(communicator: world, gradients: grads, count: n,
                                  bucketBytes: bucketElements * 4, progress: progress, shards: shards)
        let grads = reducer.gradientStorage ?? grads
        var bitwise = true
        for step in 0..<steps {
            for i in 0..<n { grads[i] = testValue(rank: world.rank, step: step, index: i, integers: integers) }
            whole.update(from: grads, count: n)
            try world.allReduce(whole, count: n, .sum)
            for i in 0..<n { whole[i] = whole[i] / Float(size) }

            // Backward-like (end to start), a rank-dependent shuffle, or forward;
            // piece boundaries differ per rank and per step.
            var rng = UInt64(step * 7919 + world.rank * 104_729 + bucketElements)
            var pieces: [Range<Int>] = []
            var at = 0
            while at < n {
                rng = mix(rng)
                let len = 1 + Int(rng % UInt64(max(1, n / 9)))
                pieces.append(at..<min(n, at + len)); at += len
            }
            switch step % 3 {
            case 0: pieces.reverse()
            case 1:
                for i in stride(from: pieces.count - 1, to: 0, by: -1) {
                    rng = mix(rng); pieces.swapAt(i, Int(rng % UInt64(i + 1)))
                }
            default: break
            }
            for p in pieces { try reducer.markReady(p) }
            try reducer.finish()
            if let sh = shards {
                // Outside its shard a rank still holds its own values: poison them, so that
                // only what the all-gather brings can pass the checks.
                for i in 0..<n where !sh.shard(world.rank).contains(i) { grads[i] = .nan }
                try world.allGatherShards(grads, shards: sh.shards)
            }

            for i in 0..<n where grads[i].bitPattern != whole[i].bitPattern { bitwise = false; break }
            // Independent reference: every rank's values recomputed here, summed in Double.
            for i in 0..<n {
                var sum = 0.0, magnitude = 0.0
                for q in 0..<size {
                    let v = Double(testValue(rank: q, step: step, index: i, integers: integers))
                    sum += v; magnitude += abs(v)
                }
                if integers {
                    let exact = Float(sum) / Float(size)
                    expect(grads[i] == exact, world, "integer-valued sum at \(i): \(grads[i]) != \(exact)")
                } else {
                    let rel = abs(Double(grads[i]) - sum / Double(size)) / max(magnitude / Double(size), 1e-30)
                    worstRel = max(worstRel, rel)
                }
            }
            // Replicas must agree bit for bit, or they drift apart.
            var h = FNV1a64.offsetBasis
            for i in 0..<n { h = FNV1a64.fold(h, UInt64(grads[i].bitPattern)) }
            let hashes = try world.allGather(h)
            expect(Set(hashes).count == 1, world, "ranks hold different reduced gradients (bucket \(bucketElements), step \(step))")
        }
        allBitwise = allBitwise && bitwise
        say(world, "reducer bucket_elements=\(bucketElements) buckets=\(reducer.layout.bucketCount) steps=\(steps) "
            + "progress=\(reducer.progress.rawValue) sharded=\(shards != nil) bitwise_whole=\(bitwise) "
            + "sum=\"\(reducer.summary)\" in_place=\(reducer.gradientStorage != nil)")
        reducer.close()
    }
    expect(worstRel < 1e-6, world, "bucketed mean differs from the Double reference by \(worstRel) relative")
    if o.flag("require-bitwise") { expect(allBitwise, world, "bucketed result differs bitwise from one whole all-reduce") }
    say(world, "reducer ok n=\(n) integers=\(integers) bitwise_all=\(allBitwise) max_rel=\(worstRel)")
}

/// Rank 1 dies while rank 0 (and any other rank) waits inside an all-reduce.
func dieMidRun(_ world: Communicator, _ o: Options) throws {
    guard world.size >= 2 else { fail("die needs at least 2 ranks") }
    let reducer = try sharedMemoryReducer(world, o, count: 1 << 20)
    if world.rank == 1 {
        Thread.sleep(forTimeInterval: o.double("after", 0.5))
        say(world, "dying now (\(o.string("how", "exit")))")
        if o.string("how", "exit") == "kill" { raise(SIGKILL) }
        exit(3)
    }
    try waitInAllReduce(world, o, count: 1 << 20, reducer: reducer)
    fail("rank \(world.rank): all-reduce returned although rank 1 died")
}

/// Rank 1 stalls outside MPI; the others' watchdog must abort the job.
func watchdogStall(_ world: Communicator, _ o: Options) throws {
    guard world.size >= 2 else { fail("watchdog needs at least 2 ranks") }
    let reducer = try sharedMemoryReducer(world, o, count: 1024)
    world.setWatchdog(seconds: o.double("seconds", 1))
    if world.rank == 1 {
        say(world, "stalling")
        Thread.sleep(forTimeInterval: o.double("stall", 120))
        fail("rank 1 was not aborted by the watchdog")
    }
    try waitInAllReduce(world, o, count: 1024, reducer: reducer)
    fail("rank \(world.rank): all-reduce returned although rank 1 stalls")
}

/// --progress shm: the wait of `die` and `watchdog` is the shared-memory gradient sum's
/// (every rank builds it first, a collective), not an MPI all-reduce.
private func sharedMemoryReducer(_ world: Communicator, _ o: Options, count: Int) throws -> GradientReducer? {
    guard o.string("progress", "mpi") == "shm" else { return nil }
    let grads = UnsafeMutablePointer<Float>.allocate(capacity: count)   // lives until the process ends
    grads.initialize(repeating: 1, count: count)
    return try GradientReducer(communicator: world, gradients: grads, count: count, progress: .shm)
}

private func waitInAllReduce(_ world: Communicator, _ o: Options, count: Int, reducer: GradientReducer?) throws {
    say(world, "waiting in all-reduce" + (reducer == nil ? "" : " (shared memory)"))
    if let r = reducer {
        try r.markReady(0..<count)
        try r.finish()
    } else {
        var buffer = [Float](repeating: 1, count: count)
        try world.allReduce(&buffer, .sum)
    }
}
