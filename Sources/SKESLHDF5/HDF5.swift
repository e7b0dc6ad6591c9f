// A small typed layer over the HDF5 C API: files, groups, datasets of numbers and
// UTF-8 strings, attributes, chunking and filters, row (hyperslab) reads and writes.
// Every failure becomes an HDF5Error naming the file and the object.
import CHDF5
import CShim

public struct HDF5Error: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Element types that map onto a native HDF5 type.
public protocol H5Scalar { static var h5Type: hid_t { get } }
extension Float: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_float() } }
extension Double: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_double() } }
extension Int32: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_int32() } }
extension Int64: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_int64() } }
extension UInt8: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_uint8() } }
extension UInt32: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_uint32() } }
extension UInt64: H5Scalar { public static var h5Type: hid_t { skesl_h5t_native_uint64() } }

private let silenceOnce: Void = { skesl_h5_silence_errors() }()

/// Storage options for a new dataset.
public struct H5Layout: Sendable {
    public var chunk: [Int]? = nil        // chunk shape; nil = contiguous
    public var deflate: Int? = nil        // gzip level 1...9
    public var shuffle: Bool = false      // byte shuffle before deflate
    public var fletcher32: Bool = false   // per-chunk checksum
    public var maxRows: Int? = nil        // nil = fixed; -1 = unlimited first dimension
    public init(chunk: [Int]? = nil, deflate: Int? = nil, shuffle: Bool = false,
                fletcher32: Bool = false, maxRows: Int? = nil) {
        self.chunk = chunk; self.deflate = deflate; self.shuffle = shuffle
        self.fletcher32 = fletcher32; self.maxRows = maxRows
    }
    public static let contiguous = H5Layout()
}

public final class H5File {
    public let path: String
    public private(set) var id: hid_t
    public let writable: Bool

    private init(path: String, id: hid_t, writable: Bool) {
        self.path = path; self.id = id; self.writable = writable
    }

    /// Creates (truncating) a file.
    public static func create(_ path: String, overwrite: Bool = true) throws -> H5File {
        _ = silenceOnce
        let flags = overwrite ? skesl_h5f_acc_trunc() : skesl_h5f_acc_excl()
        let fid = H5Fcreate(path, flags, skesl_h5p_default(), skesl_h5p_default())
        guard fid >= 0 else { throw HDF5Error("cannot create HDF5 file \(path): check the directory exists and is writable (and, without overwrite, that the file does not exist)") }
        return H5File(path: path, id: fid, writable: true)
    }

    /// Opens an existing file.
    public static func open(_ path: String, writable: Bool = false) throws -> H5File {
        _ = silenceOnce
        var st = stat()
        guard stat(path, &st) == 0 else { throw HDF5Error("\(path): no such file") }
        guard H5Fis_hdf5(path) > 0 else {
            throw HDF5Error("\(path): not a readable HDF5 file (truncated or corrupt?); recreate it or restore it from its source")
        }
        let fid = H5Fopen(path, writable ? skesl_h5f_acc_rdwr() : skesl_h5f_acc_rdonly(), skesl_h5p_default())
        guard fid >= 0 else { throw HDF5Error("\(path): HDF5 could not open the file (truncated, corrupt or locked)") }
        return H5File(path: path, id: fid, writable: writable)
    }

    public func flush() throws {
        if H5Fflush(id, H5F_SCOPE_GLOBAL) < 0 { throw HDF5Error("\(path): flush failed") }
    }

    public func close() throws {
        guard id >= 0 else { return }
        let r = H5Fclose(id)
        id = -1
        if r < 0 { throw HDF5Error("\(path): close failed (disk full or I/O error?)") }
    }

    deinit { if id >= 0 { H5Fclose(id) } }

    // MARK: objects

    public func exists(_ name: String) -> Bool {
        // Check each path component so that a missing parent group is not an error.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += (prefix.isEmpty && !name.hasPrefix("/") ? "" : "/") + part
            if H5Lexists(id, prefix, skesl_h5p_default()) <= 0 { return false }
        }
        return true
    }

    /// Creates a group (and its parents) if missing.
    public func createGroup(_ name: String) throws {
        if exists(name) { return }
        let lcpl = H5Pcreate(skesl_h5p_link_create())
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let g = H5Gcreate2(id, name, lcpl, skesl_h5p_default(), skesl_h5p_default())
        guard g >= 0 else { throw HDF5Error("\(path): cannot create group \(name)") }
        H5Gclose(g)
    }

    /// Names of the direct children of a group ("/" for the root), in name order.
    public func children(of group: String = "/") throws -> [String] {
        let g = H5Oopen(id, group, skesl_h5p_default())
        guard g >= 0 else { throw HDF5Error("\(path): no group \(group)") }
        defer { H5Oclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw HDF5Error("\(path): \(group) is not a group") }
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, skesl_h5p_default())
            guard n >= 0 else { continue }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, skesl_h5p_default())
            names.append(String(cString: buf))
        }
        return names
    }

    public func isGroup(_ name: String) -> Bool {
        guard exists(name) else { return false }
        var info = H5O_info_t()
        guard H5Oget_info_by_name2(id, name, &info, UInt32(H5O_INFO_BASIC), skesl_h5p_default()) >= 0 else { return false }
        return info.type == H5O_TYPE_GROUP
    }

    public func delete(_ name: String) throws {
        if H5Ldelete(id, name, skesl_h5p_default()) < 0 { throw HDF5Error("\(path): cannot delete \(name)") }
    }

    // MARK: datasets

    public func dataset(_ name: String) throws -> H5Dataset {
        guard exists(name) else { throw HDF5Error("\(path): missing dataset \(name)") }
        let d = H5Dopen2(id, name, skesl_h5p_default())
        guard d >= 0 else { throw HDF5Error("\(path): cannot open dataset \(name)") }
        return H5Dataset(file: self, name: name, id: d)
    }

    /// Creates a dataset of `T` with the given shape and layout.
    public func createDataset<T: H5Scalar>(_ name: String, of: T.Type, shape: [Int],
                                           layout: H5Layout = .contiguous) throws -> H5Dataset {
        try createDataset(name, type: T.h5Type, shape: shape, layout: layout)
    }

    func createDataset(_ name: String, type: hid_t, shape: [Int], layout: H5Layout) throws -> H5Dataset {
        if let slash = name.lastIndex(of: "/"), slash != name.startIndex {
            try createGroup(String(name[..<slash]))
        }
        var dims = shape.map { hsize_t($0) }
        var maxd = dims
        if let m = layout.maxRows, !maxd.isEmpty { maxd[0] = m < 0 ? skesl_h5s_unlimited() : hsize_t(m) }
        let space = dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), &dims, &maxd)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(skesl_h5p_dataset_create())
        defer { H5Pclose(dcpl) }
        // No modification times in object headers: the same content makes the same bytes,
        // so a store's shard checksums depend on its samples only, not on the second in
        // which they were written (a slow or loaded machine crossed a second boundary).
        H5Pset_obj_track_times(dcpl, false)
        if var chunk = layout.chunk?.map({ hsize_t(max($0, 1)) }), !dims.isEmpty {
            H5Pset_chunk(dcpl, Int32(chunk.count), &chunk)
            if layout.fletcher32 { H5Pset_fletcher32(dcpl) }
            if layout.shuffle { H5Pset_shuffle(dcpl) }
            if let lvl = layout.deflate { H5Pset_deflate(dcpl, UInt32(lvl)) }
        }
        let d = H5Dcreate2(id, name, type, space, skesl_h5p_default(), dcpl, skesl_h5p_default())
        guard d >= 0 else { throw HDF5Error("\(path): cannot create dataset \(name) (exists already, or disk full?)") }
        return H5Dataset(file: self, name: name, id: d)
    }

    /// Writes a whole array as a new dataset.
    public func write<T: H5Scalar>(_ name: String, _ data: UnsafeBufferPointer<T>, shape: [Int],
                                   layout: H5Layout = .contiguous) throws {
        let n = shape.reduce(1, *)
        guard n == data.count else { throw HDF5Error("\(path): \(name): \(data.count) values for shape \(shape)") }
        if exists(name) { try delete(name) }
        let ds = try createDataset(name, of: T.self, shape: shape, layout: layout)
        try ds.write(data)
    }

    public func write<T: H5Scalar>(_ name: String, _ data: [T], shape: [Int]? = nil,
                                   layout: H5Layout = .contiguous) throws {
        try data.withUnsafeBufferPointer { try write(name, $0, shape: shape ?? [data.count], layout: layout) }
    }

    /// Reads a whole dataset, converting to `T`.
    public func read<T: H5Scalar>(_ name: String, as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        let ds = try dataset(name)
        let shape = try ds.shape()
        let n = shape.reduce(1, *)
        var out = [T](unsafeUninitializedCapacity: n) { buf, count in count = n }
        try out.withUnsafeMutableBufferPointer { try ds.read(into: $0) }
        return (out, shape)
    }

    public func shape(_ name: String) throws -> [Int] { try dataset(name).shape() }

    // MARK: strings

    /// Writes variable-length UTF-8 strings as a 1-D dataset.
    public func writeStrings(_ name: String, _ strings: [String], layout: H5Layout = .contiguous) throws {
        if exists(name) { try delete(name) }
        let ds = try createDataset(name, type: H5StringType.variable.id, shape: [strings.count], layout: layout)
        try ds.writeStrings(strings, start: 0)
    }

    public func readStrings(_ name: String) throws -> [String] {
        let ds = try dataset(name)
        let n = try ds.shape().first ?? 0
        return try ds.readStrings(start: 0, count: n)
    }

    // MARK: attributes (on the root or any object)

    public func setAttribute(_ key: String, _ value: String, on object: String = "/") throws {
        let o = try openObject(object); defer { H5Oclose(o) }
        if H5Aexists(o, key) > 0 { H5Adelete(o, key) }
        let t = H5StringType.variable.id
        let sp = H5Screate(H5S_SCALAR); defer { H5Sclose(sp) }
        let a = H5Acreate2(o, key, t, sp, skesl_h5p_default(), skesl_h5p_default())
        guard a >= 0 else { throw HDF5Error("\(path): cannot write attribute \(key) on \(object)") }
        defer { H5Aclose(a) }
        let r: herr_t = value.withCString { cs in
            var p: UnsafePointer<CChar>? = cs
            return H5Awrite(a, t, &p)
        }
        if r < 0 { throw HDF5Error("\(path): cannot write attribute \(key) on \(object)") }
    }

    public func setAttribute<T: H5Scalar>(_ key: String, _ value: T, on object: String = "/") throws {
        let o = try openObject(object); defer { H5Oclose(o) }
        if H5Aexists(o, key) > 0 { H5Adelete(o, key) }
        let sp = H5Screate(H5S_SCALAR); defer { H5Sclose(sp) }
        let a = H5Acreate2(o, key, T.h5Type, sp, skesl_h5p_default(), skesl_h5p_default())
        guard a >= 0 else { throw HDF5Error("\(path): cannot write attribute \(key) on \(object)") }
        defer { H5Aclose(a) }
        var v = value
        if H5Awrite(a, T.h5Type, &v) < 0 { throw HDF5Error("\(path): cannot write attribute \(key) on \(object)") }
    }

    public func hasAttribute(_ key: String, on object: String = "/") -> Bool {
        guard let o = try? openObject(object) else { return false }
        defer { H5Oclose(o) }
        return H5Aexists(o, key) > 0
    }

    public func stringAttribute(_ key: String, on object: String = "/") throws -> String {
        let o = try openObject(object); defer { H5Oclose(o) }
        guard H5Aexists(o, key) > 0 else { throw HDF5Error("\(path): \(object) has no attribute \(key)") }
        let a = H5Aopen(o, key, skesl_h5p_default()); defer { H5Aclose(a) }
        let ft = H5Aget_type(a); defer { H5Tclose(ft) }
        guard H5Tget_class(ft) == H5T_STRING else { throw HDF5Error("\(path): attribute \(key) on \(object) is not a string") }
        if H5Tis_variable_str(ft) > 0 {
            let t = H5StringType.variable.id
            var p: UnsafeMutablePointer<CChar>? = nil
            guard H5Aread(a, t, &p) >= 0 else { throw HDF5Error("\(path): cannot read attribute \(key)") }
            defer { if p != nil { free(p) } }
            return p.map { String(cString: $0) } ?? ""
        } else {
            let n = H5Tget_size(ft)
            var buf = [CChar](repeating: 0, count: n + 1)
            let mt = H5Tcopy(skesl_h5t_c_s1()); defer { H5Tclose(mt) }
            H5Tset_size(mt, n + 1)
            guard H5Aread(a, mt, &buf) >= 0 else { throw HDF5Error("\(path): cannot read attribute \(key)") }
            return String(cString: buf)
        }
    }

    public func attribute<T: H5Scalar>(_ key: String, on object: String = "/", as: T.Type = T.self) throws -> T {
        let o = try openObject(object); defer { H5Oclose(o) }
        guard H5Aexists(o, key) > 0 else { throw HDF5Error("\(path): \(object) has no attribute \(key)") }
        let a = H5Aopen(o, key, skesl_h5p_default()); defer { H5Aclose(a) }
        let sp = H5Aget_space(a); defer { H5Sclose(sp) }
        guard H5Sget_simple_extent_npoints(sp) == 1 else { throw HDF5Error("\(path): attribute \(key) on \(object) is not a scalar") }
        var v = [T](unsafeUninitializedCapacity: 1) { _, c in c = 1 }
        guard H5Aread(a, T.h5Type, &v) >= 0 else { throw HDF5Error("\(path): cannot read attribute \(key) as \(T.self)") }
        return v[0]
    }

    func openObject(_ name: String) throws -> hid_t {
        let o = H5Oopen(id, name, skesl_h5p_default())
        guard o >= 0 else { throw HDF5Error("\(path): no object \(name)") }
        return o
    }
}

/// Variable-length UTF-8 string type, created once.
final class H5StringType: @unchecked Sendable {
    let id: hid_t
    private init() {
        id = H5Tcopy(skesl_h5t_c_s1())
        H5Tset_size(id, skesl_h5t_variable())
        H5Tset_cset(id, H5T_CSET_UTF8)
    }
    static let variable = H5StringType()
}

public final class H5Dataset {
    public let file: H5File
    public let name: String
    public let id: hid_t

    init(file: H5File, name: String, id: hid_t) { self.file = file; self.name = name; self.id = id }
    deinit { H5Dclose(id) }

    var where_: String { "\(file.path): dataset \(name)" }

    public func shape() throws -> [Int] {
        let sp = H5Dget_space(id); defer { H5Sclose(sp) }
        let rank = Int(H5Sget_simple_extent_ndims(sp))
        guard rank >= 0 else { throw HDF5Error("\(where_): unreadable dataspace") }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(sp, &dims, nil)
        return dims.map { Int($0) }
    }

    /// True when the stored element type is a floating-point type.
    public var isFloat: Bool {
        let t = H5Dget_type(id); defer { H5Tclose(t) }
        return H5Tget_class(t) == H5T_FLOAT
    }
    public var isString: Bool {
        let t = H5Dget_type(id); defer { H5Tclose(t) }
        return H5Tget_class(t) == H5T_STRING
    }

    /// Whole-dataset write.
    public func write<T: H5Scalar>(_ data: UnsafeBufferPointer<T>) throws {
        guard let base = data.baseAddress else { return }
        if H5Dwrite(id, T.h5Type, skesl_h5s_all(), skesl_h5s_all(), skesl_h5p_default(), base) < 0 {
            throw HDF5Error("\(where_): write failed (disk full or I/O error?)")
        }
    }

    /// Whole-dataset read into a buffer of exactly its size.
    public func read<T: H5Scalar>(into out: UnsafeMutableBufferPointer<T>) throws {
        let n = try shape().reduce(1, *)
        guard out.count == n else { throw HDF5Error("\(where_): holds \(n) values, buffer has \(out.count)") }
        guard n > 0, let base = out.baseAddress else { return }
        if H5Dread(id, T.h5Type, skesl_h5s_all(), skesl_h5s_all(), skesl_h5p_default(), base) < 0 {
            throw HDF5Error("\(where_): read failed (corrupt or truncated file, or a checksum error)")
        }
    }

    /// Grows the first dimension to `rows` (dataset created with maxRows).
    public func extend(rows: Int) throws {
        var dims = try shape().map { hsize_t($0) }
        dims[0] = hsize_t(rows)
        if H5Dset_extent(id, &dims) < 0 { throw HDF5Error("\(where_): cannot extend to \(rows) rows") }
    }

    /// Selects rows [start, start+count) of the file space; returns (file space, memory space).
    private func rowSpaces(start: Int, count: Int) throws -> (hid_t, hid_t, Int) {
        let shape = try shape()
        guard !shape.isEmpty, start >= 0, count >= 0, start + count <= shape[0] else {
            throw HDF5Error("\(where_): rows \(start)..<\(start + count) outside its \(shape.first ?? 0) rows")
        }
        let rowSize = shape.dropFirst().reduce(1, *)
        let fs = H5Dget_space(id)
        var off = [hsize_t](repeating: 0, count: shape.count)
        var cnt = shape.map { hsize_t($0) }
        off[0] = hsize_t(start); cnt[0] = hsize_t(count)
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, nil, &cnt, nil)
        // Memory space of the selection's shape (whole-block chunk mapping in HDF5).
        var mdims = [hsize_t(count)] + shape.dropFirst().map { hsize_t($0) }
        let ms = H5Screate_simple(Int32(mdims.count), &mdims, nil)
        return (fs, ms, rowSize)
    }

    /// Reads rows [start, start+count) into `out` (count * rowSize values).
    public func readRows<T: H5Scalar>(start: Int, count: Int, into out: UnsafeMutablePointer<T>) throws {
        if count == 0 { return }
        let (fs, ms, _) = try rowSpaces(start: start, count: count)
        defer { H5Sclose(fs); H5Sclose(ms) }
        if H5Dread(id, T.h5Type, ms, fs, skesl_h5p_default(), out) < 0 {
            throw HDF5Error("\(where_): reading rows \(start)..<\(start + count) failed (corrupt or truncated file, or a checksum error)")
        }
    }

    /// Writes rows [start, start+count) from `data`.
    public func writeRows<T: H5Scalar>(start: Int, count: Int, from data: UnsafePointer<T>) throws {
        if count == 0 { return }
        let (fs, ms, _) = try rowSpaces(start: start, count: count)
        defer { H5Sclose(fs); H5Sclose(ms) }
        if H5Dwrite(id, T.h5Type, ms, fs, skesl_h5p_default(), data) < 0 {
            throw HDF5Error("\(where_): writing rows \(start)..<\(start + count) failed (disk full or I/O error?)")
        }
    }

    /// Reads strings [start, start+count) of a 1-D string dataset (variable or fixed length).
    public func readStrings(start: Int, count: Int) throws -> [String] {
        if count == 0 { return [] }
        let (fs, ms, _) = try rowSpaces(start: start, count: count)
        defer { H5Sclose(fs); H5Sclose(ms) }
        let ft = H5Dget_type(id); defer { H5Tclose(ft) }
        guard H5Tget_class(ft) == H5T_STRING else { throw HDF5Error("\(where_): not a string dataset") }
        if H5Tis_variable_str(ft) > 0 {
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            let t = H5StringType.variable.id
            guard H5Dread(id, t, ms, fs, skesl_h5p_default(), &ptrs) >= 0 else {
                throw HDF5Error("\(where_): reading strings \(start)..<\(start + count) failed (corrupt file?)")
            }
            let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
            H5Dvlen_reclaim(t, ms, skesl_h5p_default(), &ptrs)
            return out
        } else {
            let size = H5Tget_size(ft)
            var buf = [CChar](repeating: 0, count: size * count)
            let mt = H5Tcopy(ft); defer { H5Tclose(mt) }
            guard H5Dread(id, mt, ms, fs, skesl_h5p_default(), &buf) >= 0 else {
                throw HDF5Error("\(where_): reading strings failed (corrupt file?)")
            }
            return (0..<count).map { i in
                let slice = buf[(i * size)..<((i + 1) * size)].map { UInt8(bitPattern: $0) }
                let end = slice.firstIndex(of: 0) ?? slice.count
                return String(decoding: slice[..<end], as: UTF8.self)
            }
        }
    }

    /// Writes strings at rows [start, start+count) of a variable-length string dataset.
    public func writeStrings(_ strings: [String], start: Int) throws {
        if strings.isEmpty { return }
        let (fs, ms, _) = try rowSpaces(start: start, count: strings.count)
        defer { H5Sclose(fs); H5Sclose(ms) }
        let cstrs = strings.map { strdup($0) }
        defer { cstrs.forEach { free($0) } }
        var ptrs = cstrs.map { UnsafePointer<CChar>($0) }
        if H5Dwrite(id, H5StringType.variable.id, ms, fs, skesl_h5p_default(), &ptrs) < 0 {
            throw HDF5Error("\(where_): writing strings failed (disk full or I/O error?)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Whether this HDF5 build serialises calls behind its global lock.
public var hdf5IsThreadSafe: Bool { skesl_h5_is_threadsafe() == 1 }
