// Collectives over a Communicator. Buffers are reduced in place; counts above
// MPI's Int32 limit are split into chunks (element-wise ops, so chunking does
// not change any result).
import COpenMPI
import CShim
import Foundation

/// Largest element count passed to one MPI call.
let maxChunk = Int(Int32.max)

extension Communicator {
    public func barrier() throws {
        try call("MPI_Barrier", bytes: 0) { MPI_Barrier(comm) }
    }

    private func checkRoot(_ root: Int) throws {
        guard (0..<size).contains(root) else {
            throw DistributedError("broadcast root \(root) is not a rank of this communicator (size \(size))")
        }
    }

    // MARK: broadcast

    /// Root's `buffer` overwrites everyone's. All ranks must pass the same count:
    /// the count is checked first, so a mismatch is an error, not a hang.
    public func broadcast<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int = 0) throws {
        try checkRoot(root)
        let rootCount = try broadcast(Int64(buffer.count), root: root)
        // Every rank learns of a mismatch anywhere, so all of them throw instead
        // of root sending into a broadcast the others never join.
        let mismatched = try allReduce(rootCount == Int64(buffer.count) ? 0 : Int64(1), .max)
        guard mismatched == 0 else {
            throw DistributedError("broadcast: root \(root) sends \(rootCount) elements of \(T.self) and rank \(rank) "
                + "expects \(buffer.count) (some rank's count differs); every rank must build the same shapes")
        }
        try broadcastRaw(buffer.baseAddress, count: buffer.count, root: root)
    }

    private func broadcastRaw<T: MPIScalar>(_ base: UnsafeMutablePointer<T>?, count: Int, root: Int) throws {
        guard let base = base, count > 0 else { return }
        var start = 0
        while start < count {
            let n = min(maxChunk, count - start)
            try call("MPI_Bcast", bytes: n * MemoryLayout<T>.stride) {
                MPI_Bcast(base + start, Int32(n), T.mpiDatatype, Int32(root), comm)
            }
            start += n
        }
    }

    /// Root's array goes to everyone; other ranks may pass any array (it is
    /// resized to root's count).
    public func broadcast<T: MPIScalar>(_ array: inout [T], root: Int = 0) throws {
        try checkRoot(root)
        let count = Int(try broadcast(Int64(array.count), root: root))
        if rank != root {
            guard count >= 0 else { throw DistributedError("broadcast: root sent a negative count \(count)") }
            array = [T](unsafeUninitializedCapacity: count) { buf, n in
                // Filled by the broadcast below; zero first so no garbage survives a failure.
                if count > 0 { memset(buf.baseAddress!, 0, count * MemoryLayout<T>.stride) }
                n = count
            }
        }
        try array.withUnsafeMutableBufferPointer { try broadcastRaw($0.baseAddress, count: count, root: root) }
    }

    /// Root's value.
    public func broadcast<T: MPIScalar>(_ value: T, root: Int = 0) throws -> T {
        try checkRoot(root)
        var v = value
        try withUnsafeMutablePointer(to: &v) { p in
            try call("MPI_Bcast", bytes: MemoryLayout<T>.stride) {
                MPI_Bcast(p, 1, T.mpiDatatype, Int32(root), comm)
            }
        }
        return v
    }

    /// Root's bytes.
    public func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var b = bytes
        try broadcast(&b, root: root)
        return b
    }

    /// Root's string (UTF-8).
    public func broadcast(_ string: String, root: Int = 0) throws -> String {
        let bytes = try broadcast(bytes: Array(string.utf8), root: root)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Root's value of any Codable type (a config, say), sent as JSON.
    /// Non-finite numbers travel as the strings "inf", "-inf" and "nan" (a best loss not
    /// yet set is infinite); finite ones round-trip exactly.
    public func broadcast<T: Codable>(json value: T, root: Int = 0) throws -> T {
        let encoder = JSONEncoder(), decoder = JSONDecoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let data = rank == root ? Array(try encoder.encode(value)) : []
        let received = try broadcast(bytes: data, root: root)
        do {
            return try decoder.decode(T.self, from: Data(received))
        } catch {
            throw DistributedError("broadcast: rank \(rank) cannot decode root \(root)'s \(T.self): \(error)")
        }
    }

    // MARK: all-reduce

    /// Every element becomes op over all ranks' elements, on every rank.
    public func allReduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ op: ReduceOp = .sum) throws {
        guard let base = buffer.baseAddress else { return }
        try allReduce(base, count: buffer.count, op)
    }

    public func allReduce<T: MPIScalar>(_ base: UnsafeMutablePointer<T>, count: Int, _ op: ReduceOp = .sum) throws {
        var start = 0
        while start < count {
            let n = min(maxChunk, count - start)
            try call("MPI_Allreduce", bytes: n * MemoryLayout<T>.stride) {
                MPI_Allreduce(skesl_mpi_in_place(), base + start, Int32(n), T.mpiDatatype, op.mpiOp, comm)
            }
            start += n
        }
    }

    public func allReduce<T: MPIScalar>(_ array: inout [T], _ op: ReduceOp = .sum) throws {
        try array.withUnsafeMutableBufferPointer { try allReduce($0, op) }
    }

    public func allReduce<T: MPIScalar>(_ value: T, _ op: ReduceOp = .sum) throws -> T {
        var v = value
        try withUnsafeMutablePointer(to: &v) { p in
            try call("MPI_Allreduce", bytes: MemoryLayout<T>.stride) {
                MPI_Allreduce(skesl_mpi_in_place(), p, 1, T.mpiDatatype, op.mpiOp, comm)
            }
        }
        return v
    }

    // MARK: all-gather

    /// Everyone's value, indexed by rank.
    public func allGather<T: MPIScalar>(_ value: T) throws -> [T] {
        var mine = value
        var out = [T](repeating: value, count: size)
        try withUnsafePointer(to: &mine) { p in
            try out.withUnsafeMutableBufferPointer { o in
                try call("MPI_Allgather", bytes: size * MemoryLayout<T>.stride) {
                    MPI_Allgather(p, 1, T.mpiDatatype, o.baseAddress, 1, T.mpiDatatype, comm)
                }
            }
        }
        return out
    }

    /// Everyone's buffers, concatenated in rank order; all ranks pass the same count.
    public func allGather<T: MPIScalar>(_ buffer: UnsafeBufferPointer<T>) throws -> [T] {
        let counts = try allGather(Int64(buffer.count))
        guard counts.allSatisfy({ $0 == Int64(buffer.count) }) else {
            throw DistributedError("allGather: ranks pass different counts \(counts); use allGatherVariable")
        }
        return try allGatherVariable(buffer, counts: counts)
    }

    /// Everyone's buffers of possibly different lengths, concatenated in rank order.
    public func allGatherVariable<T: MPIScalar>(_ buffer: UnsafeBufferPointer<T>) throws -> [[T]] {
        let counts = try allGather(Int64(buffer.count))
        let flat = try allGatherVariable(buffer, counts: counts)
        var out: [[T]] = []
        var at = 0
        for c in counts { out.append(Array(flat[at..<(at + Int(c))])); at += Int(c) }
        return out
    }

    private func allGatherVariable<T: MPIScalar>(_ buffer: UnsafeBufferPointer<T>, counts: [Int64]) throws -> [T] {
        let total = counts.reduce(0, +)
        guard total <= Int64(maxChunk) else {
            throw DistributedError("allGather of \(total) elements exceeds MPI's per-call limit of \(maxChunk)")
        }
        var recvCounts = counts.map { Int32($0) }
        var displs = [Int32](repeating: 0, count: counts.count)
        for i in 1..<max(1, counts.count) { displs[i] = displs[i - 1] + recvCounts[i - 1] }
        var out = [T](unsafeUninitializedCapacity: Int(total)) { buf, n in
            if total > 0 { memset(buf.baseAddress!, 0, Int(total) * MemoryLayout<T>.stride) }
            n = Int(total)
        }
        try out.withUnsafeMutableBufferPointer { o in
            try call("MPI_Allgatherv", bytes: Int(total) * MemoryLayout<T>.stride) {
                MPI_Allgatherv(buffer.baseAddress, Int32(buffer.count), T.mpiDatatype,
                               o.baseAddress, &recvCounts, &displs, T.mpiDatatype, comm)
            }
        }
        return out
    }

    /// In place: rank r's `shards[r]` of `base` goes to every rank (the shards are
    /// contiguous, in rank order, and cover 0..<shards.last.upperBound). After it every rank
    /// holds the whole buffer. Used for the sharded optimiser's parameters and moments.
    public func allGatherShards<T: MPIScalar>(_ base: UnsafeMutablePointer<T>, shards: [Range<Int>]) throws {
        guard shards.count == size else {
            throw DistributedError("allGatherShards: \(shards.count) shards for \(size) ranks")
        }
        guard (shards.last?.upperBound ?? 0) <= maxChunk else {
            throw DistributedError("allGatherShards of \(shards.last!.upperBound) elements exceeds MPI's per-call limit of \(maxChunk)")
        }
        var counts = shards.map { Int32($0.count) }
        var displs = shards.map { Int32($0.lowerBound) }
        try call("MPI_Allgatherv", bytes: (shards.last?.upperBound ?? 0) * MemoryLayout<T>.stride) {
            MPI_Allgatherv(skesl_mpi_in_place(), 0, T.mpiDatatype, base, &counts, &displs, T.mpiDatatype, comm)
        }
    }

    /// Everyone's string, indexed by rank (host names, file names, versions).
    public func allGather(_ string: String) throws -> [String] {
        let bytes = Array(string.utf8)
        return try bytes.withUnsafeBufferPointer { try allGatherVariable($0) }
            .map { String(decoding: $0, as: UTF8.self) }
    }
}
