// A JSON value of any shape, for the free-form parts of the metrics log (the run's
// configuration, tool versions) that the log keeps but does not interpret.
import Foundation

public enum LogJSON: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([LogJSON])
    case object([String: LogJSON])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([LogJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: LogJSON].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Any Encodable value (e.g. a training configuration struct) as a LogJSON tree.
    public static func from<T: Encodable>(_ value: T) throws -> LogJSON {
        let data = try JSONEncoder().encode(value)
        return try JSONDecoder().decode(LogJSON.self, from: data)
    }

    /// Indented text, keys sorted, for display in reports.
    public func pretty() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}
