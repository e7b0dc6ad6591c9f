// A flat Codable value as attributes of one HDF5 object, one attribute per field, so that a
// type's fields are listed once (in the type) and files stay readable by any HDF5 tool
// (h5dump, h5py: `f.attrs["step"]`). Fields may be Int (stored as int64), UInt64, Double
// and String; optionals are left out when nil. Nested values are refused: a field that
// is not one of these is a programming error, reported by the encoder, not written.
import Foundation

public enum H5Attributes {
    /// Writes every field of `value` as an attribute of `object`.
    public static func write<T: Encodable>(_ value: T, to file: H5File, on object: String = "/") throws {
        let sink = AttributeSink()
        try value.encode(to: AttributeEncoder(sink: sink))
        for (key, v) in sink.values {
            switch v {
            case .int(let x): try file.setAttribute(key, x, on: object)
            case .uint(let x): try file.setAttribute(key, x, on: object)
            case .double(let x): try file.setAttribute(key, x, on: object)
            case .string(let x): try file.setAttribute(key, x, on: object)
            }
        }
    }

    /// Reads a value whose fields are attributes of `object`; a missing attribute names the
    /// file and the key.
    public static func read<T: Decodable>(_ type: T.Type, from file: H5File, on object: String = "/") throws -> T {
        do {
            return try T(from: AttributeDecoder(file: file, object: object))
        } catch let e as DecodingError {
            switch e {
            case .keyNotFound(let k, _): throw HDF5Error("\(file.path): attribute \(k.stringValue) is missing on \(object)")
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
                throw HDF5Error("\(file.path): attribute \(c.codingPath.map(\.stringValue).joined(separator: ".")) on \(object): \(c.debugDescription)")
            @unknown default: throw e
            }
        }
    }
}

enum AttributeValue { case int(Int64), uint(UInt64), double(Double), string(String) }

final class AttributeSink { var values: [(String, AttributeValue)] = [] }

struct AttributeEncoder: Encoder {
    let sink: AttributeSink
    var codingPath: [CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Container(sink: sink))
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer { fatalError("H5Attributes: only flat keyed values are written as attributes") }
    func singleValueContainer() -> SingleValueEncodingContainer { fatalError("H5Attributes: only flat keyed values are written as attributes") }

    struct Container<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let sink: AttributeSink
        var codingPath: [CodingKey] = []
        mutating func encodeNil(forKey key: Key) throws {}
        mutating func encode(_ v: Int, forKey key: Key) throws { sink.values.append((key.stringValue, .int(Int64(v)))) }
        mutating func encode(_ v: Int64, forKey key: Key) throws { sink.values.append((key.stringValue, .int(v))) }
        mutating func encode(_ v: UInt64, forKey key: Key) throws { sink.values.append((key.stringValue, .uint(v))) }
        mutating func encode(_ v: Double, forKey key: Key) throws { sink.values.append((key.stringValue, .double(v))) }
        mutating func encode(_ v: String, forKey key: Key) throws { sink.values.append((key.stringValue, .string(v))) }
        mutating func encode<T: Encodable>(_ v: T, forKey key: Key) throws {
            throw EncodingError.invalidValue(v, .init(codingPath: codingPath + [key],
                                                      debugDescription: "\(T.self) is not an attribute type (Int, UInt64, Double, String)"))
        }
        mutating func nestedContainer<N: CodingKey>(keyedBy: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
            fatalError("H5Attributes: \(key.stringValue) is nested; only flat values are written as attributes")
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
            fatalError("H5Attributes: \(key.stringValue) is nested; only flat values are written as attributes")
        }
        mutating func superEncoder() -> Encoder { fatalError("H5Attributes: no super encoder") }
        mutating func superEncoder(forKey key: Key) -> Encoder { fatalError("H5Attributes: no super encoder") }
    }
}

struct AttributeDecoder: Decoder {
    let file: H5File, object: String
    var codingPath: [CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]
    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Container(file: file, object: object))
    }
    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "only flat keyed values are read from attributes"))
    }
    func singleValueContainer() throws -> SingleValueDecodingContainer {
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "only flat keyed values are read from attributes"))
    }

    struct Container<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let file: H5File, object: String
        var codingPath: [CodingKey] = []
        var allKeys: [Key] { [] }
        func contains(_ key: Key) -> Bool { file.hasAttribute(key.stringValue, on: object) }
        func decodeNil(forKey key: Key) throws -> Bool { !contains(key) }
        private func present(_ key: Key) throws {
            guard contains(key) else { throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no attribute")) }
        }
        func decode(_ t: Int.Type, forKey key: Key) throws -> Int { try present(key); return Int(try file.attribute(key.stringValue, on: object, as: Int64.self)) }
        func decode(_ t: Int64.Type, forKey key: Key) throws -> Int64 { try present(key); return try file.attribute(key.stringValue, on: object, as: Int64.self) }
        func decode(_ t: UInt64.Type, forKey key: Key) throws -> UInt64 { try present(key); return try file.attribute(key.stringValue, on: object, as: UInt64.self) }
        func decode(_ t: Double.Type, forKey key: Key) throws -> Double { try present(key); return try file.attribute(key.stringValue, on: object, as: Double.self) }
        func decode(_ t: String.Type, forKey key: Key) throws -> String { try present(key); return try file.stringAttribute(key.stringValue, on: object) }
        func decode<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath + [key],
                                                          debugDescription: "\(T.self) is not an attribute type (Int, UInt64, Double, String)"))
        }
        func nestedContainer<N: CodingKey>(keyedBy: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            throw DecodingError.typeMismatch(Key.self, .init(codingPath: codingPath + [key], debugDescription: "attributes are flat"))
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
            throw DecodingError.typeMismatch(Key.self, .init(codingPath: codingPath + [key], debugDescription: "attributes are flat"))
        }
        func superDecoder() throws -> Decoder { throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "no super decoder")) }
        func superDecoder(forKey key: Key) throws -> Decoder { throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "no super decoder")) }
    }
}
