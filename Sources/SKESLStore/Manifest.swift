// The store's manifest (manifest.json): format name and schema version, feature
// shapes, whether it is labeled, and its shards with sample counts, sizes and CRC-32s.
// docs/feature-store.md is the specification; keep the two in step.
import Foundation

public let storeFormatName = "skesl-feature-store"
public let storeSchemaVersion = 1
public let manifestFileName = "manifest.json"

/// Shapes of one utterance's features, the same in every shard of a store.
public struct FeatureSpec: Codable, Equatable, Sendable, CustomStringConvertible {
    public var audioFrames: Int
    public var audioDim: Int
    public var videoFrames: Int
    public var videoDim: Int
    /// Token ids per utterance (padded); nil when the store holds no token ids.
    public var tokens: Int?
    public var labeled: Bool

    public init(audioFrames: Int, audioDim: Int, videoFrames: Int, videoDim: Int,
                tokens: Int? = nil, labeled: Bool = false) {
        self.audioFrames = audioFrames; self.audioDim = audioDim
        self.videoFrames = videoFrames; self.videoDim = videoDim
        self.tokens = tokens; self.labeled = labeled
    }

    /// The reference shapes: 400 x 33 audio, 55 x 709 video, 39 token ids.
    public static let reference = FeatureSpec(audioFrames: 400, audioDim: 33, videoFrames: 55, videoDim: 709, tokens: 39)

    public var audioRow: Int { audioFrames * audioDim }
    public var videoRow: Int { videoFrames * videoDim }
    /// Float32 feature bytes per sample.
    public var featureBytes: Int { 4 * (audioRow + videoRow) }

    public var description: String {
        "audio \(audioFrames)x\(audioDim), video \(videoFrames)x\(videoDim), tokens \(tokens.map(String.init) ?? "none"), \(labeled ? "labeled" : "unlabeled")"
    }

    func validate(_ what: String) throws {
        for (n, v) in [("audio frames", audioFrames), ("audio dim", audioDim), ("video frames", videoFrames), ("video dim", videoDim)] where v < 1 {
            throw StoreError("\(what): \(n) is \(v); every feature dimension must be at least 1")
        }
        if let t = tokens, t < 1 { throw StoreError("\(what): tokens is \(t); use at least 1, or none") }
    }
}

/// Splits of a labeled store, stored per sample as a uint8 code.
public enum Split: UInt8, Codable, CaseIterable, Sendable {
    case train = 0, valid = 1, test = 2
    public var name: String { ["train", "valid", "test"][Int(rawValue)] }
    public init?(name: String) {
        switch name.lowercased() {
        case "train": self = .train
        case "valid", "validation", "val", "dev": self = .valid
        case "test": self = .test
        default: return nil
        }
    }
}

public struct ShardEntry: Codable, Equatable, Sendable {
    public var file: String
    public var samples: Int
    public var bytes: Int
    public var crc32: String
    public init(file: String, samples: Int, bytes: Int, crc32: String) {
        self.file = file; self.samples = samples; self.bytes = bytes; self.crc32 = crc32
    }
}

public struct Manifest: Codable, Equatable, Sendable {
    public var format: String = storeFormatName
    public var schemaVersion: Int = storeSchemaVersion
    public var name: String
    public var features: FeatureSpec
    /// Inclusive label range checked by verify and the loader (labeled stores).
    public var labelRange: [Float]?
    public var checksum: String = "crc32"
    public var totalSamples: Int
    /// Samples per split (labeled stores).
    public var splits: [String: Int]?
    public var shards: [ShardEntry]
    public var createdBy: String?

    public init(name: String, features: FeatureSpec, labelRange: [Float]?, shards: [ShardEntry],
                splits: [String: Int]? = nil, createdBy: String? = nil) {
        self.name = name; self.features = features; self.labelRange = labelRange
        self.shards = shards; self.totalSamples = shards.reduce(0) { $0 + $1.samples }
        self.splits = splits; self.createdBy = createdBy
    }

    public static func load(directory: String) throws -> Manifest {
        let path = directory + "/" + manifestFileName
        guard FileManager.default.fileExists(atPath: directory) else {
            throw StoreError("\(directory): no such store directory")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError("\(path): missing; a store is a directory holding manifest.json and its shard files (see docs/feature-store.md)")
        }
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        let m: Manifest
        do { m = try dec.decode(Manifest.self, from: data) } catch {
            throw StoreError("\(path): not a valid store manifest (\(describe(error)))")
        }
        guard m.format == storeFormatName else { throw StoreError("\(path): format is \"\(m.format)\", expected \"\(storeFormatName)\"") }
        guard m.schemaVersion == storeSchemaVersion else {
            throw StoreError("\(path): schema version \(m.schemaVersion); this skesl reads version \(storeSchemaVersion): re-import or convert the store")
        }
        try m.features.validate(path)
        guard m.totalSamples == m.shards.reduce(0, { $0 + $1.samples }) else {
            throw StoreError("\(path): total_samples \(m.totalSamples) differs from the sum of its shards' samples")
        }
        if let r = m.labelRange, r.count != 2 || !(r[0] <= r[1]) {
            throw StoreError("\(path): label_range must be [low, high] with low <= high")
        }
        for s in m.shards where s.samples < 0 || s.file.contains("/") {
            throw StoreError("\(path): shard entry \(s.file) is invalid (negative count or a path outside the store)")
        }
        return m
    }

    public func save(directory: String) throws {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(self)
        let path = directory + "/" + manifestFileName
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw StoreError("\(tmp): cannot write (directory missing or disk full?)")
        }
        _ = try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: tmp, toPath: path)
    }
}

func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let k, _): return "missing key \(k.stringValue)"
    case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
        return "wrong type at \(c.codingPath.map { $0.stringValue }.joined(separator: "."))"
    case DecodingError.dataCorrupted(let c): return c.debugDescription
    default: return "\(error)"
    }
}
