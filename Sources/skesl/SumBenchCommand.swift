// `skesl bench-sum`: the gradient sum alone, across the ranks of an MPI job, for each way
// training can sum (train.allreduce), at the reference gradients' sizes. A training step's
// "all-reduce" share mixes the sum with waiting for slower ranks and with compute's
// interference; this times the sum with nothing else running, on the same reducer code the
// trainer uses, so a node's figure can be set against the step's (docs/scaling.md, "The sum
// alone") and against Open MPI's other all-reduce algorithms (run it with `--mca
// coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm K`; the run says which
// one it used). Every sum is checked: rank r contributes r + 1 everywhere, so each element
// must come back as N(N+1)/2.
import ArgumentParser
import Foundation
import SKESLDistributed
import SKESLModel

struct SumBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-sum",
        abstract: "Time the gradient sum alone across an MPI job's ranks, for each train.allreduce mode, at the reference gradients' sizes.",
        discussion: """
        Run under the launcher: Cluster/launch.sh --np 16 -- bench-sum. Sizes: the reference \
        model's trainable gradients for pretraining (BERT frozen: the encoder and head) and \
        fine-tuning (BERT trainable), or --floats. Each sum is timed from a barrier to the \
        end of the reducer's finish(), on every rank; the table gives the median rank's and \
        the slowest rank's median over --steps sums, and the bus bandwidth (2(N-1)/N of the \
        gradient per rank, as a ring moves it). --json prints one JSON line per sum instead.

        Example: Cluster/launch.sh --np 2 -- bench-sum --task pretrain --sum deferred --sum shm
        """)

    enum Size: String, ExpressibleByArgument, CaseIterable { case pretrain, finetune }

    @Option(help: "Reference gradient sizes: pretrain, finetune (repeatable).") var task: [Size] = Size.allCases
    @Option(help: "Gradient sizes in floats instead of --task (repeatable).") var floats: [Int] = []
    @Option(help: "Ways to sum: deferred, poll, thread, shm (repeatable; train.allreduce's modes).")
    var sum: [String] = ["deferred", "shm"]
    @Option(help: "Timed sums per size and way (after one untimed).") var steps = 10
    @Option(help: "Bucket size in MiB (train.bucketMB).") var bucketMB = 8.0
    @Flag(help: "One JSON line per size and way on standard output, instead of the table.") var json = false

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard bucketMB > 0 else { throw ValidationError("--bucket-mb must be > 0") }
        guard floats.allSatisfy({ $0 > 0 }) else { throw ValidationError("--floats must be positive") }
        for s in sum where GradientReducer.Progress(rawValue: s) == nil {
            throw ValidationError("--sum \(s) is not one of deferred, poll, thread, shm")
        }
    }

    /// The reference model's trainable floats for pretraining (BERT frozen) or fine-tuning.
    static func referenceFloats(_ s: Size) -> Int {
        var c = ModelConfig()
        c.freezeBert = s == .pretrain
        return ParameterLayout(config: c).trainableCount
    }

    func run() throws {
        try withWorld { comm in
            let sizes: [(String, Int)] = floats.isEmpty ? task.map { ($0.rawValue, Self.referenceFloats($0)) } : floats.map { ("floats", $0) }
            let hosts = try comm.hostLayout().hosts
            let env = ProcessInfo.processInfo.environment
            let algorithm = env["OMPI_MCA_coll_tuned_use_dynamic_rules"] == "1" ? env["OMPI_MCA_coll_tuned_allreduce_algorithm"] ?? "default" : "default"
            // How Open MPI's shared-memory transport moves a large message between ranks of a host:
            // one copy through the kernel (CMA, its default where allowed) or two through a shared
            // buffer ("none": what a container that forbids process_vm_readv leaves; the bundle's
            // run wrapper sets it there). `--mca btl_vader_single_copy_mechanism none` reaches the
            // ranks as this variable.
            let singleCopy = env["OMPI_MCA_btl_vader_single_copy_mechanism"] ?? "default"
            let n = Double(comm.size)
            if comm.rank == 0 && !json {
                print(String(format: "bench-sum: %d ranks on %d host(s); Open MPI all-reduce algorithm: %@; shared-memory single copy: %@; buckets of %g MiB; median of %d sums per rank",
                             comm.size, hosts, algorithm == "default" ? "its own choice" : "coll_tuned \(algorithm)",
                             singleCopy == "default" ? "its own choice" : singleCopy, bucketMB, steps))
                print("size        floats       MB  sum       median rank ms  slowest rank ms  bus GB/s")
            }
            for (name, count) in sizes {
                for s in sum {
                    let mode = GradientReducer.Progress(rawValue: s)!
                    let t = try time(comm, count: count, mode: mode)
                    let mb = Double(count * 4) / 1e6
                    // Bytes each rank moves in a ring all-reduce, over the slowest rank's time.
                    let bus = Double(count * 4) * 2 * (n - 1) / n / max(t.slowest, 1e-12) / 1e9
                    guard comm.rank == 0 else { continue }
                    if json {
                        print(String(format: #"{"bench": "sum", "size": "%@", "floats": %d, "mb": %.3f, "sum": "%@", "bucket_mb": %g, "ranks": %d, "hosts": %d, "algorithm": "%@", "single_copy": "%@", "ms_median_rank": %.3f, "ms_slowest_rank": %.3f, "busbw_gbs": %.3f, "checked": true}"#,
                                     name, count, mb, s, bucketMB, comm.size, hosts, algorithm, singleCopy, 1e3 * t.median, 1e3 * t.slowest, bus))
                    } else {
                        print(name.padding(toLength: 8, withPad: " ", startingAt: 0) + String(format: " %10d %8.1f  ", count, mb)
                              + s.padding(toLength: 8, withPad: " ", startingAt: 0)
                              + String(format: " %15.2f %16.2f %9.2f", 1e3 * t.median, 1e3 * t.slowest, bus))
                    }
                }
            }
        }
    }

    /// Every rank's median seconds per sum, summarised: the median rank's and the slowest's.
    func time(_ comm: Communicator, count: Int, mode: GradientReducer.Progress) throws -> (median: Double, slowest: Double) {
        let bucketBytes = Int(bucketMB * 1_048_576)
        var owned: UnsafeMutablePointer<Float>?
        let reducer: GradientReducer
        if mode == .shm {
            reducer = try GradientReducer(sharedMemoryOn: comm, count: count, bucketBytes: bucketBytes, average: false)
        } else {
            owned = .allocate(capacity: count)
            reducer = try GradientReducer(communicator: comm, gradients: owned!, count: count, bucketBytes: bucketBytes,
                                          average: false, progress: mode)
        }
        defer { reducer.close(); owned?.deallocate() }
        // Where the sum happens: the shared block for shm (backward writes there), else our buffer.
        guard let grads = reducer.gradientStorage ?? owned else {
            throw CommandFailure("bench-sum: the shm reducer gave no gradient storage")
        }
        let mine = Float(comm.rank + 1), want = Float(comm.size * (comm.size + 1) / 2)
        var times: [Double] = []
        for step in 0...steps {
            grads.update(repeating: mine, count: count)
            try comm.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try reducer.markReady(0..<count)
            try reducer.finish()
            if step > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
            // The sum is exact in Float32 for any rank count a node has (small integers).
            for i in [0, count / 3, count / 2, count - 1] where grads[i] != want {
                throw CommandFailure("bench-sum: \(mode.rawValue) sum of \(count) floats on \(comm.size) ranks gave \(grads[i]) at element \(i) on rank \(comm.rank), not \(want)")
            }
        }
        times.sort()
        let all = try comm.allGather(times[times.count / 2]).sorted()
        return (all[all.count / 2], all.last!)
    }
}
