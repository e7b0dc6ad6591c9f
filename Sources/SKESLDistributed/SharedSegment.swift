// One block of memory mapped by every rank on a host: the buffers of the shared-memory
// gradient sum (SharedMemoryEngine.swift, train.allreduce: shm).
//
// Why a file of our own rather than MPI_Win_allocate_shared: a tmpfs that runs out of room
// (a container's 64 MB /dev/shm, say) makes a shared window's first touch of a page die of
// SIGBUS; here each rank reserves its pages with posix_fallocate up front, so a full tmpfs
// is an error message naming the fix, on every rank, before training starts. The file is
// unlinked as soon as every rank has mapped it, so nothing is left behind by any exit,
// kill -9 included; the pages go when the last rank unmaps them.
//
// Each rank reserves the byte ranges it will write most (its own input), so the kernel
// places those pages on that rank's NUMA node, as a first touch would.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class SharedSegment {
    let base: UnsafeMutableRawPointer
    let bytes: Int

    /// The directory of the backing file: `SKESL_SHM_DIR`, else /dev/shm.
    static var directory: String { ProcessInfo.processInfo.environment["SKESL_SHM_DIR"] ?? "/dev/shm" }

    /// Collective over `host`, the ranks of one host. `reserve`: the byte ranges this rank
    /// allocates (they may be empty; together the ranks' ranges should cover the block).
    init(host: Communicator, bytes: Int, reserve: [Range<Int>], purpose: String) throws {
        precondition(bytes > 0)
        self.bytes = bytes
        let dir = SharedSegment.directory
        // 1. The host's first rank creates the file (sparse, the whole size) and names it.
        var created = ""
        if host.rank == 0 {
            do { created = "ok:" + (try SharedSegment.create(dir: dir, bytes: bytes, purpose: purpose)) }
            catch { created = "error:" + "\(error)" }
        }
        created = try host.broadcast(created)
        guard created.hasPrefix("ok:") else { throw DistributedError(String(created.dropFirst("error:".count))) }
        let path = String(created.dropFirst(3))
        // 2. Every rank maps it and reserves its pages; any failure fails every rank of the host.
        var mapped: UnsafeMutableRawPointer? = nil
        var failure: String? = nil
        let fd = open(path, O_RDWR)
        if fd < 0 {
            failure = "cannot open \(path), made by this host's first rank: \(String(cString: strerror(errno)))"
        } else {
            for r in reserve where !r.isEmpty && failure == nil {
                let rc = posix_fallocate(fd, off_t(r.lowerBound), off_t(r.count))
                if rc != 0 { failure = SharedSegment.noRoom(dir: dir, bytes: bytes, detail: String(cString: strerror(rc))) }
            }
            if failure == nil {
                let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                if p == MAP_FAILED { failure = "mmap of \(bytes) bytes of \(path) failed: \(String(cString: strerror(errno)))" }
                else { mapped = p }
            }
            close(fd)
        }
        let failedAnywhere = try host.allReduce(Int32(failure == nil ? 0 : 1), .max)
        // 3. Mapped everywhere (or failed): the name is no longer needed.
        try host.barrier()
        if host.rank == 0 { unlink(path) }
        guard failedAnywhere == 0, let m = mapped else {
            if let m = mapped { munmap(m, bytes) }
            throw DistributedError(failure ?? "another rank on this host could not map the shared-memory gradient buffers "
                + "(its message says why)")
        }
        base = m
    }

    deinit { munmap(base, bytes) }

    private static func create(dir: String, bytes: Int, purpose: String) throws -> String {
        var fs = statvfs()
        guard statvfs(dir, &fs) == 0 else {
            throw DistributedError("\(dir) is not usable for shared memory (\(String(cString: strerror(errno)))): "
                + "set SKESL_SHM_DIR to a tmpfs directory, or use train.allreduce=auto (an MPI sum: deferred on one host, poll across hosts)")
        }
        let free = Int(fs.f_bavail) * Int(fs.f_frsize)
        guard free >= bytes else { throw DistributedError(noRoom(dir: dir, bytes: bytes, free: free)) }
        let path = "\(dir)/skesl-\(purpose)-\(getpid())-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw DistributedError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(path)
            throw DistributedError("cannot size \(path) to \(bytes) bytes: \(e)")
        }
        return path
    }

    static func noRoom(dir: String, bytes: Int, free: Int? = nil, detail: String? = nil) -> String {
        let mib = { (b: Int) in String(format: "%.1f MiB", Double(b) / 1_048_576) }
        return "\(dir) has no room for the shared-memory gradient sum (this host's ranks need \(mib(bytes))"
            + (free.map { ", \(mib($0)) free" } ?? "") + (detail.map { ": \($0)" } ?? "") + "): "
            + "enlarge it (docker run --shm-size=..., or mount -o remount,size=... \(dir)), point SKESL_SHM_DIR at a "
            + "larger tmpfs, or use train.allreduce=auto (an MPI sum: deferred on one host, poll across hosts)"
    }
}
