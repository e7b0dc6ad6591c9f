// Process-wide MPI state: MPI may be initialised once and finalised once per
// process, whatever number of Communicator objects the program makes.
import COpenMPI
import CShim
import Foundation

/// Thread support levels of MPI_Init_thread.
public enum ThreadLevel: Int32, Comparable, Sendable, CustomStringConvertible {
    case single = 0, funneled = 1, serialized = 2, multiple = 3
    public static func < (a: ThreadLevel, b: ThreadLevel) -> Bool { a.rawValue < b.rawValue }
    public var description: String {
        switch self {
        case .single: return "MPI_THREAD_SINGLE"
        case .funneled: return "MPI_THREAD_FUNNELED"
        case .serialized: return "MPI_THREAD_SERIALIZED"
        case .multiple: return "MPI_THREAD_MULTIPLE"
        }
    }
}

enum MPIRuntime {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var provided: ThreadLevel?
    nonisolated(unsafe) private static var finalized = false

    /// Initialises MPI asking for MPI_THREAD_MULTIPLE (the gradient reducer's
    /// communication thread needs it) and returns the level actually provided.
    /// Without mpirun, Open MPI starts as a singleton world of size 1.
    static func initialize() throws -> ThreadLevel {
        lock.lock(); defer { lock.unlock() }
        if let p = provided { return p }
        if finalized {
            throw DistributedError("MPI was already finalised in this process; it cannot be started again")
        }
        var already: Int32 = 0
        MPI_Initialized(&already)
        var level: Int32 = 0
        if already != 0 {
            // Someone else (a host program, a library) started MPI: use what it got.
            try MPIError.check(MPI_Query_thread(&level), "MPI_Query_thread")
        } else {
            let rc = MPI_Init_thread(nil, nil, skesl_mpi_thread_multiple(), &level)
            if rc != 0 {
                throw DistributedError("MPI_Init_thread failed with code \(rc): is Open MPI installed "
                    + "(libopenmpi-dev, openmpi-bin) and, under mpirun, are all hosts reachable?")
            }
        }
        // Errors come back as return codes on every communicator derived from the world.
        try MPIError.check(MPI_Comm_set_errhandler(skesl_mpi_comm_world(), skesl_mpi_errors_return()),
                           "MPI_Comm_set_errhandler")
        let p = ThreadLevel(rawValue: level) ?? .single
        provided = p
        return p
    }

    static var isInitialized: Bool {
        lock.lock(); defer { lock.unlock() }
        return provided != nil && !finalized
    }

    static func finalize() throws {
        lock.lock(); defer { lock.unlock() }
        guard provided != nil, !finalized else { return }
        finalized = true
        CollectiveWatchdog.shared.stop()
        try MPIError.check(MPI_Finalize(), "MPI_Finalize")
    }

    static var isFinalized: Bool {
        lock.lock(); defer { lock.unlock() }
        return finalized
    }
}

/// Monotonic seconds, for timings and the watchdog.
@inline(__always)
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
