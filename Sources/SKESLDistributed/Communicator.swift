// A Swift handle on an MPI communicator: who am I, how many are we, and the
// collectives data-parallel training needs (Communicator+Collectives.swift).
//
// Thread rule (MPI's, not ours): collectives on ONE communicator must be called
// in the same order on every rank, so two threads must never run collectives on
// the same communicator at once. A thread of its own gets `duplicate()`
// (the GradientReducer does this for its communication thread).
import COpenMPI
import CShim
import Foundation
import SKESLLog

public final class Communicator: @unchecked Sendable {
    /// This process's rank in the communicator, 0..<size.
    public let rank: Int
    /// Number of processes in the communicator.
    public let size: Int
    /// Thread level MPI provided (MPI_THREAD_MULTIPLE asked for).
    public let threadLevel: ThreadLevel
    let comm: MPI_Comm
    private let owned: Bool
    private var freed = false

    nonisolated(unsafe) private static var worldInstance: Communicator?
    private static let worldLock = NSLock()

    /// The world communicator, initialising MPI on first use. Under mpirun/srun
    /// every process is one rank; started alone, Open MPI makes a singleton
    /// world of size 1, so the same program runs without a launcher.
    /// `watchdogSeconds`: abort the whole job when a collective blocks longer
    /// (nil keeps the current setting; the env var SKESL_MPI_WATCHDOG sets a default).
    public static func world(watchdogSeconds: Double? = nil) throws -> Communicator {
        worldLock.lock(); defer { worldLock.unlock() }
        let world: Communicator
        if let w = worldInstance {
            world = w
        } else {
            let level = try MPIRuntime.initialize()
            world = try Communicator(comm: skesl_mpi_comm_world(), owned: false, threadLevel: level)
            worldInstance = world
            CollectiveWatchdog.shared.setRankLabel("rank \(world.rank) of \(world.size) on \(world.processorName)")
        }
        if let s = watchdogSeconds { world.setWatchdog(seconds: s) }
        else if let s = CollectiveWatchdog.shared.seconds { world.setWatchdog(seconds: s) }
        return world
    }

    private init(comm: MPI_Comm, owned: Bool, threadLevel: ThreadLevel) throws {
        var r: Int32 = 0, s: Int32 = 0
        try MPIError.check(MPI_Comm_rank(comm, &r), "MPI_Comm_rank")
        try MPIError.check(MPI_Comm_size(comm, &s), "MPI_Comm_size")
        self.comm = comm
        self.owned = owned
        self.rank = Int(r)
        self.size = Int(s)
        self.threadLevel = threadLevel
    }

    deinit { if owned && !freed && !MPIRuntime.isFinalized { var c: MPI_Comm? = comm; MPI_Comm_free(&c) } }

    /// A new communicator with the same ranks whose collectives never mix with
    /// this one's: for a second thread.
    public func duplicate() throws -> Communicator {
        var c: MPI_Comm? = nil
        try MPIError.check(MPI_Comm_dup(comm, &c), "MPI_Comm_dup")
        guard let dup = c else { throw DistributedError("MPI_Comm_dup returned no communicator") }
        return try Communicator(comm: dup, owned: true, threadLevel: threadLevel)
    }

    /// The ranks of this communicator on this host (those that can share memory with it),
    /// ranked in this communicator's order: MPI_Comm_split_type with MPI_COMM_TYPE_SHARED.
    /// Collective.
    public func splitByHost() throws -> Communicator {
        var c: MPI_Comm? = nil
        try MPIError.check(MPI_Comm_split_type(comm, skesl_mpi_comm_type_shared(), Int32(rank), skesl_mpi_info_null(), &c),
                           "MPI_Comm_split_type")
        guard let sub = c else { throw DistributedError("MPI_Comm_split_type returned no communicator") }
        return try Communicator(comm: sub, owned: true, threadLevel: threadLevel)
    }

    /// The hosts as splitByHost groups the ranks: this rank's host's first rank (in this
    /// communicator) and how many hosts there are. Collective.
    public func hostLayout() throws -> (leader: Int, hosts: Int) {
        let local = try splitByHost()
        return (try local.broadcast(rank), try allReduce(local.rank == 0 ? 1 : 0))
    }

    /// The ranks that pass the same `color`, ranked by `key`: MPI_Comm_split. Collective.
    public func split(color: Int, key: Int) throws -> Communicator {
        var c: MPI_Comm? = nil
        try MPIError.check(MPI_Comm_split(comm, Int32(color), Int32(key), &c), "MPI_Comm_split")
        guard let sub = c else { throw DistributedError("MPI_Comm_split returned no communicator") }
        return try Communicator(comm: sub, owned: true, threadLevel: threadLevel)
    }

    /// True when this process was started by a launcher (mpirun, srun) rather
    /// than alone as a singleton.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// MPI_Get_processor_name: the host this rank runs on.
    public var processorName: String {
        var buffer = [CChar](repeating: 0, count: Int(skesl_mpi_max_processor_name()) + 1)
        var length: Int32 = 0
        guard MPI_Get_processor_name(&buffer, &length) == 0 else { return "?" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Abort every collective call that blocks longer than `seconds` by
    /// aborting the whole job (MPI_Abort, exit code 124) with a message naming
    /// the call; nil or 0 switches the watchdog off. Process-wide.
    public func setWatchdog(seconds: Double?) {
        CollectiveWatchdog.shared.configure(seconds: seconds,
                                            rankLabel: "rank \(rank) of \(size) on \(processorName)")
    }

    public var watchdogSeconds: Double? { CollectiveWatchdog.shared.seconds }

    /// Ends the whole job: prints `message` (with this rank) to stderr and asks
    /// MPI to kill every rank; the launcher exits with `code`.
    public func abort(code: Int32, message: String) -> Never {
        Log.write(.error, "skesl: rank \(rank) of \(size): \(message)")
        MPI_Abort(comm, code)
        exit(code)
    }

    /// Frees a duplicated communicator now rather than at deinit.
    public func free() throws {
        guard owned, !freed, !MPIRuntime.isFinalized else { return }
        freed = true
        var c: MPI_Comm? = comm
        try MPIError.check(MPI_Comm_free(&c), "MPI_Comm_free")
    }

    /// MPI_Finalize, once per process, after the last collective on any
    /// communicator. Every rank must call it (or exit non-zero).
    public static func finalize() throws {
        try MPIRuntime.finalize()
    }

    /// Wraps one blocking MPI call: watchdog registration and error conversion.
    @inline(__always)
    func call(_ name: StaticString, bytes: Int, _ body: () -> Int32) throws {
        let id = CollectiveWatchdog.shared.begin("\(name) of \(bytes) bytes")
        let rc = body()
        CollectiveWatchdog.shared.end(id)
        if rc != 0 { throw MPIError(call: "\(name)", code: rc, message: MPIError.errorString(rc)) }
    }
}
