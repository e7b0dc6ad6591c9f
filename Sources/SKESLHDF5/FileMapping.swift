// A whole file mapped read-only, for reading chunks at known addresses without a system
// call or a kernel copy per read (the store loader's feature rows).
import Glibc

public final class FileMapping: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int

    public init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HDF5Error("\(path): cannot open for mapping (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { throw HDF5Error("\(path): cannot map an empty or unreadable file") }
        let p = mmap(nil, Int(st.st_size), PROT_READ, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw HDF5Error("\(path): mmap failed (\(String(cString: strerror(errno))))") }
        self.path = path; base = UnsafeRawPointer(p); size = Int(st.st_size)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}
