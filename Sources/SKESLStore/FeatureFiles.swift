// Readers of per-utterance feature files: NumPy .npy (2-D or 1-D, float32/float64/int,
// little-endian, C order), numeric CSV (an optional header line), and OpenFace 2.0 CSV
// (header line; the features are the columns after the first five: frame, face_id,
// timestamp, confidence, success).
import Foundation

/// A frames x dim matrix of features.
public struct FeatureMatrix: Sendable {
    public var frames: Int
    public var dim: Int
    public var values: [Float]
}

public func readNpy(_ path: String) throws -> FeatureMatrix {
    guard let data = FileManager.default.contents(atPath: path) else { throw StoreError("\(path): cannot read") }
    let b = [UInt8](data)
    guard b.count >= 10, b[0] == 0x93, b[1...5].elementsEqual("NUMPY".utf8) else {
        throw StoreError("\(path): not a NumPy .npy file (bad magic)")
    }
    let major = b[6]
    let (hlen, hstart): (Int, Int) = major == 1 ? (Int(b[8]) | Int(b[9]) << 8, 10)
        : (Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24, 12)
    guard hstart + hlen <= b.count, let header = String(bytes: b[hstart..<(hstart + hlen)], encoding: .ascii) else {
        throw StoreError("\(path): truncated .npy header")
    }
    func field(_ key: String) -> String? {
        guard let r = header.range(of: "'\(key)':") else { return nil }
        return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
    }
    guard let descrF = field("descr"), let q1 = descrF.firstIndex(of: "'") else { throw StoreError("\(path): .npy header has no descr") }
    let rest = descrF[descrF.index(after: q1)...]
    let descr = String(rest[..<(rest.firstIndex(of: "'") ?? rest.endIndex)])
    if field("fortran_order")?.hasPrefix("True") == true { throw StoreError("\(path): Fortran-ordered .npy; save it with np.ascontiguousarray") }
    guard let shapeF = field("shape"), let open = shapeF.firstIndex(of: "("), let close = shapeF.firstIndex(of: ")") else {
        throw StoreError("\(path): .npy header has no shape")
    }
    let dims = shapeF[shapeF.index(after: open)..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard dims.count == 1 || dims.count == 2 else { throw StoreError("\(path): .npy of \(dims.count) dimensions; expected frames x features") }
    let frames = dims[0], dim = dims.count == 2 ? dims[1] : 1
    let n = frames * dim
    let body = hstart + hlen
    let size: Int
    switch descr {
    case "<f4", "<i4": size = 4
    case "<f8", "<i8": size = 8
    default: throw StoreError("\(path): .npy dtype \(descr) unsupported; use little-endian float32/float64")
    }
    guard b.count - body >= n * size else { throw StoreError("\(path): truncated .npy (\(b.count - body) data bytes for shape \(dims))") }
    var out = [Float](repeating: 0, count: n)
    b.withUnsafeBytes { raw in
        let p = raw.baseAddress! + body
        for i in 0..<n {
            switch descr {
            case "<f4": out[i] = p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            case "<f8": out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
            case "<i4": out[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
            default: out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            }
        }
    }
    return FeatureMatrix(frames: frames, dim: dim, values: out)
}

/// Numeric CSV, one frame per line; `skipColumns` leading columns dropped; a first line
/// that does not parse as numbers is taken as a header.
public func readFeatureCSV(_ path: String, skipColumns: Int = 0) throws -> FeatureMatrix {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw StoreError("\(path): cannot read") }
    var values: [Float] = []
    var dim = -1, frames = 0
    for (ln, line) in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
        let cols = line.split(separator: ",", omittingEmptySubsequences: false)
        if cols.count <= skipColumns { continue }
        var row: [Float] = []
        row.reserveCapacity(cols.count - skipColumns)
        var numeric = true
        for c in cols[skipColumns...] {
            let t = c.trimmingCharacters(in: .whitespaces)
            if let v = Float(t) { row.append(v) } else if t.lowercased() == "nan" { row.append(.nan) } else { numeric = false; break }
        }
        if !numeric {
            if ln == 0 { continue }   // header
            throw StoreError("\(path): line \(ln + 1) holds a value that is not a number")
        }
        if dim < 0 { dim = row.count } else if row.count != dim {
            throw StoreError("\(path): line \(ln + 1) has \(row.count + skipColumns) columns, earlier lines \(dim + skipColumns)")
        }
        values.append(contentsOf: row); frames += 1
    }
    guard dim > 0 else { throw StoreError("\(path): no feature rows") }
    return FeatureMatrix(frames: frames, dim: dim, values: values)
}

public func readOpenFaceCSV(_ path: String) throws -> FeatureMatrix { try readFeatureCSV(path, skipColumns: 5) }
