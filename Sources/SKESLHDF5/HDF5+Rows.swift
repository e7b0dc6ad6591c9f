// Additions for streaming stores: datasets opened with a chosen chunk cache (so that
// memory does not grow with the number of open shards), a row reader that keeps its
// dataspaces (one H5Dread per row, no per-call allocation), reads feature rows as raw
// chunks or out of a mapping of the file with its own checksum pass, and holds small
// datasets in memory; and storage introspection (filters, chunk shape, chunk addresses).
import CHDF5
import CShim
import Glibc

extension H5File {
    /// Opens a dataset whose chunk cache holds at most `cacheBytes` (0: chunks bypass the
    /// cache, right when every read touches a chunk once, as in a global shuffle).
    public func dataset(_ name: String, cacheBytes: Int, slots: Int = 521) throws -> H5Dataset {
        guard exists(name) else { throw HDF5Error("\(path): missing dataset \(name)") }
        let dapl = H5Pcreate(skesl_h5p_dataset_access())
        defer { H5Pclose(dapl) }
        H5Pset_chunk_cache(dapl, slots, cacheBytes, 1.0)
        let d = H5Dopen2(id, name, dapl)
        guard d >= 0 else { throw HDF5Error("\(path): cannot open dataset \(name)") }
        return H5Dataset(file: self, name: name, id: d)
    }

    /// Creates a 1-D dataset of variable-length UTF-8 strings (chunked and extendable
    /// when the layout says so), to be filled with `writeStrings(_:start:)`.
    public func createStringDataset(_ name: String, rows: Int, layout: H5Layout = .contiguous) throws -> H5Dataset {
        try createDataset(name, type: H5StringType.variable.id, shape: [rows], layout: layout)
    }
}

/// Storage facts of a dataset.
public struct H5StorageInfo: Sendable {
    public var chunk: [Int]?
    public var filters: [String]
    public var storedBytes: Int
    public var typeDescription: String
}

extension H5Dataset {
    public var storage: H5StorageInfo {
        let dcpl = H5Dget_create_plist(id); defer { H5Pclose(dcpl) }
        var chunk: [Int]? = nil
        if H5Pget_layout(dcpl) == H5D_CHUNKED {
            var dims = [hsize_t](repeating: 0, count: 8)
            let r = Int(H5Pget_chunk(dcpl, 8, &dims))
            if r > 0 { chunk = dims[0..<r].map { Int($0) } }
        }
        var filters: [String] = []
        let nf = H5Pget_nfilters(dcpl)
        if nf > 0 {
            for i in 0..<UInt32(nf) {
                var flags: UInt32 = 0
                var nelmts = 8
                var values = [UInt32](repeating: 0, count: 8)
                var name = [CChar](repeating: 0, count: 64)
                var config: UInt32 = 0
                let f = H5Pget_filter2(dcpl, i, &flags, &nelmts, &values, 64, &name, &config)
                switch f {
                case H5Z_FILTER_DEFLATE: filters.append("deflate(\(nelmts > 0 ? values[0] : 0))")
                case H5Z_FILTER_SHUFFLE: filters.append("shuffle")
                case H5Z_FILTER_FLETCHER32: filters.append("fletcher32")
                default: filters.append(String(cString: name))
                }
            }
        }
        let t = H5Dget_type(id); defer { H5Tclose(t) }
        let cls = H5Tget_class(t)
        let size = H5Tget_size(t)
        let desc: String
        switch cls {
        case H5T_FLOAT: desc = "float\(size * 8)"
        case H5T_INTEGER: desc = (H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int") + "\(size * 8)"
        case H5T_STRING: desc = H5Tis_variable_str(t) > 0 ? "string(utf-8, variable)" : "string(\(size))"
        default: desc = "other"
        }
        return H5StorageInfo(chunk: chunk, filters: filters, storedBytes: Int(H5Dget_storage_size(id)),
                             typeDescription: desc)
    }

    /// File address and stored size of the chunk holding element `coord` (chunked datasets).
    public func chunkLocation(_ coord: [Int]) throws -> (address: Int, size: Int) {
        var off = coord.map { hsize_t($0) }
        var mask: UInt32 = 0
        var addr: haddr_t = 0
        var size: hsize_t = 0
        guard H5Dget_chunk_info_by_coord(id, &off, &mask, &addr, &size) >= 0 else {
            throw HDF5Error("\(file.path): dataset \(name): no chunk at \(coord)")
        }
        return (Int(addr), Int(size))
    }

    /// Rows per chunk and whether chunks end with a Fletcher32 checksum, when every chunk
    /// holds whole rows of native Float32 stored as is or with Fletcher32 only (chunk
    /// shape [k, rest of the row]): a row's bytes then lie at a fixed offset of its chunk,
    /// and can be read from a mapping of the file. Nil for other layouts.
    public func rowChunkLayout() throws -> (rowsPerChunk: Int, checksum: Bool)? {
        let shape = try self.shape()
        let st = storage
        guard let c = st.chunk, c.count == shape.count, c.count >= 1, c[0] >= 1, Array(c.dropFirst()) == Array(shape.dropFirst()),
              st.filters.allSatisfy({ $0 == "fletcher32" }), st.filters.count <= 1 else { return nil }
        let t = H5Dget_type(id); defer { H5Tclose(t) }
        guard H5Tequal(t, skesl_h5t_native_float()) > 0 else { return nil }
        return (c[0], !st.filters.isEmpty)
    }

    /// True when the dataset's element type is an integer type.
    public var isInteger: Bool {
        let t = H5Dget_type(id); defer { H5Tclose(t) }
        return H5Tget_class(t) == H5T_INTEGER
    }
}

/// Reads single rows (or runs of rows) of one dataset with prepared dataspaces.
/// Not thread-safe: one reader per thread.
public final class H5RowReader {
    public let dataset: H5Dataset
    public let rows: Int
    public let rowSize: Int          // values per row
    public let shape: [Int]
    private let fileSpace: hid_t
    private var memSpaces: [Int: hid_t] = [:]
    private var offset: [hsize_t]
    private var count: [hsize_t]
    /// Set when rows can be read straight from their chunks (see `readFloatRows`).
    private let direct: DirectChunks?
    public var readsChunksDirectly: Bool { direct != nil }
    /// Each row's chunk address in a mapping of the file (`useChunkAddresses`).
    private var mapped: (file: FileMapping, addresses: [UInt64])? = nil
    public var readsFromMapping: Bool { mapped != nil }
    /// Mapped rows: verify the checksum (and finiteness) on every read, or only on a row's
    /// first read from this mapping, after which its bytes are those already verified in
    /// the page cache (a bit per row remembers it).
    public var verifyEveryRead = true
    private var verified: [UInt64] = []
    /// The whole dataset in memory (`preload`), as raw values of `preloadedType`.
    private var preloaded: UnsafeMutableRawPointer? = nil
    private var preloadedType: Any.Type? = nil

    private struct DirectChunks {
        let rowBytes: Int
        let checksum: Bool      // chunks end with HDF5's 4-byte Fletcher32
        let scratch: UnsafeMutableRawPointer   // one raw chunk, for a row with no room after it
    }

    public init(_ dataset: H5Dataset) throws {
        self.dataset = dataset
        shape = try dataset.shape()
        guard !shape.isEmpty else { throw HDF5Error("\(dataset.file.path): dataset \(dataset.name) is a scalar, rows expected") }
        rows = shape[0]
        rowSize = shape.dropFirst().reduce(1, *)
        fileSpace = H5Dget_space(dataset.id)
        offset = [hsize_t](repeating: 0, count: shape.count)
        count = shape.map { hsize_t($0) }
        direct = H5RowReader.directChunks(dataset, shape: shape)
    }

    deinit {
        H5Sclose(fileSpace)
        for (_, s) in memSpaces { H5Sclose(s) }
        direct?.scratch.deallocate()
        preloaded?.deallocate()
    }

    /// Rows qualify for direct reads when each chunk is one row of native Float32, stored
    /// as is or with Fletcher32 only (the store's default layout): the chunk's bytes are
    /// then the row's values, followed by the checksum.
    private static func directChunks(_ d: H5Dataset, shape: [Int]) -> DirectChunks? {
        let st = d.storage
        guard st.chunk == [1] + shape.dropFirst(), st.filters.allSatisfy({ $0 == "fletcher32" }), st.filters.count <= 1 else { return nil }
        let t = H5Dget_type(d.id); defer { H5Tclose(t) }
        guard H5Tequal(t, skesl_h5t_native_float()) > 0 else { return nil }
        let rowBytes = shape.dropFirst().reduce(1, *) * 4
        return DirectChunks(rowBytes: rowBytes, checksum: !st.filters.isEmpty,
                            scratch: UnsafeMutableRawPointer.allocate(byteCount: rowBytes + 4, alignment: 64))
    }

    private func memSpace(_ n: Int) -> hid_t {
        if let s = memSpaces[n] { return s }
        // The same shape as the file selection: HDF5 then maps chunks to memory in whole
        // blocks; a flat memory space makes it map every element (10x slower here).
        var d = [hsize_t(n)] + shape.dropFirst().map { hsize_t($0) }
        let s = H5Screate_simple(Int32(d.count), &d, nil)
        memSpaces[n] = s
        return s
    }

    private func checkRange(_ start: Int, _ n: Int) throws {
        guard start >= 0, n >= 0, start + n <= rows else {
            throw HDF5Error("\(dataset.file.path): dataset \(dataset.name): rows \(start)..<\(start + n) outside its \(rows) rows")
        }
    }

    private func select(_ start: Int, _ n: Int) throws {
        try checkRange(start, n)
        offset[0] = hsize_t(start); count[0] = hsize_t(n)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &offset, nil, &count, nil)
    }

    /// Reads rows [start, start+n) as `T` into `out` (n * rowSize values).
    public func read<T: H5Scalar>(_ start: Int, _ n: Int = 1, into out: UnsafeMutablePointer<T>) throws {
        if n == 0 { return }
        if let m = preloaded, preloadedType == T.self {
            try checkRange(start, n)
            out.update(from: m.assumingMemoryBound(to: T.self) + start * rowSize, count: n * rowSize)
            return
        }
        try select(start, n)
        if H5Dread(dataset.id, T.h5Type, memSpace(n), fileSpace, skesl_h5p_default(), out) < 0 {
            throw HDF5Error("\(dataset.file.path): dataset \(dataset.name): reading rows \(start)..<\(start + n) failed (corrupt or truncated file, or a Fletcher32 checksum error)")
        }
    }

    /// Reads the whole dataset into memory once, so that later `read`s of `T` copy from it.
    /// For small per-sample datasets (lengths, labels): a read then costs no HDF5 call.
    /// Returns false, and keeps reading from the file, when the whole read fails (a
    /// corrupt chunk), so that the failing row is still the one reported.
    @discardableResult
    public func preload<T: H5Scalar>(as: T.Type) -> Bool {
        guard preloaded == nil, rows > 0 else { return preloaded != nil }
        let m = UnsafeMutablePointer<T>.allocate(capacity: rows * rowSize)
        do { try read(0, rows, into: m) } catch { m.deallocate(); return false }
        preloaded = UnsafeMutableRawPointer(m); preloadedType = T.self
        return true
    }

    /// Reads later rows from `mapping` at `addresses` (one per row, the file addresses of
    /// the rows' chunks, as the store writer records them): a read is then one pass that
    /// copies the row out of the page cache and verifies it, with no HDF5 call and no
    /// system call. Returns false, and changes nothing, unless the rows qualify for direct
    /// reads and every address lies inside the file with room for its chunk.
    @discardableResult
    public func useChunkAddresses(_ addresses: [UInt64], mapping: FileMapping) -> Bool {
        guard let d = direct, addresses.count == rows else { return false }
        let chunk = UInt64(d.rowBytes + (d.checksum ? 4 : 0))
        guard addresses.allSatisfy({ $0 < UInt64(mapping.size) && UInt64(mapping.size) - $0 >= chunk }) else { return false }
        // Spot checks against HDF5's own chunk index (first, middle and last row): an
        // index from another file or an older version of this one is refused.
        for r in Set([0, rows / 2, rows - 1]) where rows > 0 {
            guard let loc = try? dataset.chunkLocation([r] + [Int](repeating: 0, count: shape.count - 1)),
                  UInt64(loc.address) == addresses[r], loc.size == Int(chunk) else { return false }
        }
        mapped = (mapping, addresses)
        verified = [UInt64](repeating: 0, count: (rows + 63) / 64)
        return true
    }

    /// Reads rows [start, start+n) of Float32 into `out`, like `read`, and says whether
    /// they are all finite (nil: not examined, as when a row went through HDF5's read). `spareBytesAfter`: how many bytes after
    /// the n rows are addressable (they are left as they were).
    ///
    /// Rows stored one per chunk as native Float32 with at most Fletcher32 (the store's
    /// layout) are copied out of the file's mapping (`useChunkAddresses`), or else read as
    /// raw chunks (`H5Dread_chunk`) straight into `out`; one vectorised pass verifies the
    /// checksum and tests every value for NaN/Inf. HDF5's
    /// filtered read copies each chunk twice and checksums at a third of that speed,
    /// which made it most of a streaming loader's CPU time. Anything unexpected (a chunk
    /// not written, another size, a checksum that does not match) goes through HDF5's
    /// read, whose verdict and error message stand.
    public func readFloatRows(_ start: Int, _ n: Int = 1, into out: UnsafeMutablePointer<Float>, spareBytesAfter: Int = 0) throws -> Bool? {
        guard let d = direct else { try read(start, n, into: out); return nil }
        try checkRange(start, n)
        var finite: Bool? = true
        for k in 0..<n {
            let dst = out + k * rowSize
            if let m = mapped, let f = readMapped(row: start + k, into: dst, m.file, m.addresses, d) {
                finite = finite.map { $0 && f }
                continue
            }
            // A raw chunk is the row plus 4 bytes of checksum: it lands in place when 4
            // bytes after the row are addressable (saved and put back), else in scratch.
            let inPlace = !d.checksum || k < n - 1 || spareBytesAfter >= 4
            if let f = readDirect(row: start + k, into: inPlace ? dst : d.scratch.assumingMemoryBound(to: Float.self), d) {
                if !inPlace { dst.update(from: d.scratch.assumingMemoryBound(to: Float.self), count: rowSize) }
                finite = finite.map { $0 && f }
            } else {
                try read(start + k, 1, into: dst)
                finite = nil
            }
        }
        return finite
    }

    /// One row copied out of the mapped file and verified in the same pass; nil when
    /// HDF5's read must decide.
    private func readMapped(row: Int, into dst: UnsafeMutablePointer<Float>, _ file: FileMapping, _ addresses: [UInt64],
                            _ d: DirectChunks) -> Bool? {
        let src = file.base + Int(addresses[row])
        let bit: UInt64 = 1 << UInt64(row & 63)
        if !verifyEveryRead && verified[row >> 6] & bit != 0 {
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: d.rowBytes)
            return true
        }
        let r = fletcher32Copy(from: src, to: UnsafeMutableRawPointer(dst), bytes: d.rowBytes)
        let stored = d.checksum ? UInt32(littleEndian: src.loadUnaligned(fromByteOffset: d.rowBytes, as: UInt32.self)) : 0
        guard let finite = verdict(r, stored: stored, d) else { return nil }
        if finite { verified[row >> 6] |= bit }
        return finite
    }

    /// One row as its raw chunk into `dst` (4 bytes past the row are overwritten and put
    /// back when there is a checksum); nil when HDF5's read must decide.
    private func readDirect(row: Int, into dst: UnsafeMutablePointer<Float>, _ d: DirectChunks) -> Bool? {
        offset[0] = hsize_t(row)
        for i in 1..<offset.count { offset[i] = 0 }
        // The stored size first: H5Dread_chunk writes the whole stored chunk, so a damaged
        // index must not make it write past the row.
        var size: hsize_t = 0
        let expected = d.rowBytes + (d.checksum ? 4 : 0)
        guard H5Dget_chunk_storage_size(dataset.id, &offset, &size) >= 0, Int(size) == expected else { return nil }
        let after = UnsafeMutableRawPointer(dst) + d.rowBytes
        let saved: UInt32 = d.checksum ? after.loadUnaligned(as: UInt32.self) : 0
        var mask: UInt32 = 0
        let ok = H5Dread_chunk(dataset.id, skesl_h5p_default(), &offset, &mask, dst) >= 0
        let stored: UInt32 = d.checksum ? UInt32(littleEndian: after.loadUnaligned(as: UInt32.self)) : 0
        if d.checksum { after.storeBytes(of: saved, as: UInt32.self) }
        guard ok, mask == 0 else { return nil }
        return verdict(fletcher32Residues(dst, bytes: d.rowBytes), stored: stored, d)
    }

    /// A row's pass: nil when its checksum does not match (HDF5's read then decides), else
    /// whether it is all finite.
    @inline(__always)
    private func verdict(_ r: (sum1: UInt32, sum2: UInt32, finite: Bool), stored: UInt32, _ d: DirectChunks) -> Bool? {
        if d.checksum && !fletcher32Matches(stored: stored, sum1: r.sum1, sum2: r.sum2) { return nil }
        return r.finite
    }

    /// Reads rows [start, start+n) of a 1-D variable-length string dataset.
    public func readStrings(_ start: Int, _ n: Int = 1) throws -> [String] {
        if n == 0 { return [] }
        try select(start, n)
        var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
        let t = H5StringType.variable.id
        let ms = memSpace(n)
        guard H5Dread(dataset.id, t, ms, fileSpace, skesl_h5p_default(), &ptrs) >= 0 else {
            throw HDF5Error("\(dataset.file.path): dataset \(dataset.name): reading strings \(start)..<\(start + n) failed (corrupt or truncated file, or a Fletcher32 checksum error)")
        }
        let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
        H5Dvlen_reclaim(t, ms, skesl_h5p_default(), &ptrs)
        return out
    }
}

/// HDF5 keeps an error stack per thread and prints it by default; threads other than
/// the first one that opened a file (a loader's prefetch thread) call this so that
/// failures reach the user only through HDF5Error messages.
public func hdf5SilenceErrorsOnThisThread() { skesl_h5_silence_errors() }

extension H5File {
    /// Caps this file's metadata cache (object headers, chunk indexes, global heap
    /// collections of variable-length strings) at `bytes`, fixed size. HDF5's default
    /// grows to 32 MB per open file, which with dozens of shards open at once would make
    /// a reader's memory grow with the store.
    public func limitMetadataCache(bytes: Int) throws {
        var c = H5AC_cache_config_t()
        c.version = 1   // H5AC__CURR_CACHE_CONFIG_VERSION
        guard H5Fget_mdc_config(id, &c) >= 0 else { throw HDF5Error("\(path): cannot read its metadata cache settings") }
        c.set_initial_size = true
        c.initial_size = bytes
        c.min_size = bytes
        c.max_size = bytes
        c.incr_mode = H5C_incr__off
        c.flash_incr_mode = H5C_flash_incr__off
        c.decr_mode = H5C_decr__off
        guard H5Fset_mdc_config(id, &c) >= 0 else { throw HDF5Error("\(path): cannot set its metadata cache to \(bytes) bytes") }
    }
}
