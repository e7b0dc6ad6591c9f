// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {…}}), then the
// tensors' little-endian bytes, offsets relative to the end of the header. Every
// offset, size and shape is checked before any byte is read.
import Foundation
import SKESLText

public struct SafetensorsEntry: Equatable, Sendable {
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let begin: Int, end: Int      // byte range within the data section
    public var count: Int { shape.reduce(1, *) }
}

public final class SafetensorsFile {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    static let dtypeSizes: [String: Int] = ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4,
                                            "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8,
                                            "F8_E4M3": 1, "F8_E5M2": 1]

    public init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw TextError("\(path): no such safetensors file") }
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) }
        catch { throw TextError("\(path): cannot read (\(error.localizedDescription))") }
        let bad = { (why: String) in TextError("\(path): not a valid safetensors file: \(why); re-download or re-save the checkpoint") }
        guard data.count >= 8 else { throw bad("shorter than the 8-byte header length") }
        let n64 = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard n64 <= UInt64(data.count - 8), n64 <= 100_000_000 else {
            throw bad("the header length \(n64) exceeds the file (\(data.count) bytes): truncated?")
        }
        let n = Int(n64)
        dataStart = 8 + n
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) as? [String: Any] else {
            throw bad("the header is not a JSON object")
        }
        let dataBytes = data.count - dataStart
        var entries: [String: SafetensorsEntry] = [:]
        var meta: [String: String] = [:]
        for (name, v) in header {
            if name == "__metadata__" {
                for (k, x) in (v as? [String: Any]) ?? [:] { meta[k] = x as? String ?? "\(x)" }
                continue
            }
            guard let o = v as? [String: Any], let dtype = o["dtype"] as? String,
                  let shapeN = o["shape"] as? [NSNumber], let offs = o["data_offsets"] as? [NSNumber], offs.count == 2 else {
                throw bad("tensor \(name) lacks dtype, shape or data_offsets")
            }
            let shape = shapeN.map { $0.intValue }
            let b = offs[0].intValue, e = offs[1].intValue
            guard shape.allSatisfy({ $0 >= 0 }) else { throw bad("tensor \(name) has a negative dimension in \(shape)") }
            guard b >= 0, b <= e, e <= dataBytes else {
                throw bad("tensor \(name) spans bytes \(b)..<\(e) but the data section holds \(dataBytes): truncated?")
            }
            if let size = Self.dtypeSizes[dtype] {
                var count = 1
                for d in shape {
                    let (m, o) = count.multipliedReportingOverflow(by: d)
                    guard !o else { throw bad("tensor \(name) has an impossible shape \(shape)") }
                    count = m
                }
                guard count * size == e - b else {
                    throw bad("tensor \(name) of shape \(shape) and dtype \(dtype) needs \(count * size) bytes, has \(e - b)")
                }
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: b, end: e)
        }
        self.entries = entries
        metadata = meta
    }

    public var names: [String] { entries.keys.sorted() }

    /// The tensor as Float32 (F32 as is; F16, BF16 and F64 converted).
    public func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw TextError("\(path): no tensor \(name)") }
        let n = e.count
        var out = [Float](repeating: 0, count: n)
        let base = dataStart + e.begin
        try data.withUnsafeBytes { raw in
            switch e.dtype {
            case "F32":
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 4 * i, as: UInt32.self))) }
            case "F16":
                for i in 0..<n { out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self))) }
            case "BF16":
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self))) << 16) }
            case "F64":
                for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8 * i, as: UInt64.self)))) }
            default:
                throw TextError("\(path): tensor \(name) has dtype \(e.dtype); weights must be F32, F16, BF16 or F64")
            }
        }
        return out
    }

    /// Writes F32 tensors (in the given order), header padded to 8 bytes as the format recommends.
    public static func write(_ path: String, tensors: [(name: String, shape: [Int], values: [Float])],
                             metadata: [String: String] = ["format": "pt"]) throws {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            guard t.shape.reduce(1, *) == t.values.count else {
                throw TextError("\(path): tensor \(t.name) has \(t.values.count) values for shape \(t.shape)")
            }
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors {
            #if _endian(little)
            t.values.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            #endif
        }
        do { try out.write(to: URL(fileURLWithPath: path), options: .atomic) }
        catch { throw TextError("\(path): cannot write (\(error.localizedDescription))") }
    }
}

/// IEEE binary16 to binary32, subnormals, infinities and NaN included.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exp = Int((h >> 10) & 0x1F)
    let man = UInt32(h & 0x3FF)
    if exp == 0 {
        if man == 0 { return Float(bitPattern: sign) }
        let v = Float(man) * Float(sign: .plus, exponent: -24, significand: 1)   // man * 2^-24
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
    return Float(bitPattern: sign | (UInt32(exp - 15 + 127) << 23) | (man << 13))
}
