// skesl-mpitest: multi-rank checks of SKESLDistributed (run under mpirun by
// Tests/DistributedTests) and MPI benchmarks (run by hand, release build).
// Every rank prints lines "rank R/S: ..."; a failed check prints "FAIL ..." and
// exits 1, which makes mpirun fail.
import Foundation
import SKESLDistributed

setvbuf(stdout, nil, _IOLBF, 0)

let usage = """
    usage: skesl-mpitest MODE [options]
      collectives                      barrier, broadcast, all-reduce, all-gather checks
      reducer [--n N] [--buckets B1,B2,..] [--steps S] [--progress thread|poll|deferred|shm] [--integers] [--shard] [--in-place]
                                       bucketed reducer vs one whole all-reduce
      die [--how exit|kill] [--after SECONDS] [--progress shm]
                                       rank 1 dies while rank 0 waits in an all-reduce (or the shared-memory sum)
      watchdog [--seconds S] [--progress shm]
                                       rank 1 stalls; rank 0's watchdog must abort the job
      bench-allreduce [--sizes-mb 1,2,..] [--seconds S]
                                       all-reduce bandwidth per message size
      bench-overlap [--mb M] [--bucket-mb B] [--steps S]
                                       reducer overlap with a concurrent sgemm loop
    """

let arguments = Array(CommandLine.arguments.dropFirst())
guard let mode = arguments.first else { fputs(usage + "\n", stderr); exit(2) }
let options = Options(Array(arguments.dropFirst()))

do {
    let world = try Communicator.world()
    switch mode {
    case "collectives": try checkCollectives(world)
    case "reducer": try checkReducer(world, options)
    case "die": try dieMidRun(world, options)
    case "watchdog": try watchdogStall(world, options)
    case "bench-allreduce": try benchAllReduce(world, options)
    case "bench-overlap": try benchOverlap(world, options)
    default: fputs("skesl-mpitest: unknown mode \(mode)\n\(usage)\n", stderr); exit(2)
    }
    try Communicator.finalize()
} catch {
    fputs("skesl-mpitest: \(error)\n", stderr)
    exit(1)
}
