// The model's parameters in HDF5: one float32 dataset per named tensor under
// /weights (PyTorch names and shapes), the model config as JSON in the root
// attribute `config_json`. Checkpoints hold the same group.
import Foundation
import SKESLHDF5

public enum WeightsFile {
    public static let group = "/weights"

    /// Writes every parameter of `net` (or only those whose name has one of `prefixes`).
    public static func write(_ net: SKESLNetwork, to file: H5File, prefixes: [String]? = nil) throws {
        try file.createGroup(group)
        for e in net.layout.entries where prefixes.map({ ps in ps.contains { e.name.hasPrefix($0) } }) ?? true {
            try file.write(group + "/" + e.name, UnsafeBufferPointer(start: net.params + e.offset, count: e.count), shape: e.shape)
        }
        try file.setAttribute("config_json", try configJSON(net.config))
    }

    public static func save(_ net: SKESLNetwork, to path: String) throws {
        let f = try H5File.create(path)
        try write(net, to: f)
        try f.close()
    }

    public static func configJSON(_ c: ModelConfig) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(c), as: UTF8.self)
    }

    /// Reads the model config stored with the weights.
    public static func config(in file: H5File) throws -> ModelConfig {
        guard file.hasAttribute("config_json") else {
            throw ModelError("\(file.path): no config_json attribute: not a skesl weights file or checkpoint")
        }
        let s = try file.stringAttribute("config_json")
        do { return try JSONDecoder().decode(ModelConfig.self, from: Data(s.utf8)) }
        catch { throw ModelError("\(file.path): config_json is not a valid model config (\(error))") }
    }

    public enum Missing { case error, keep }

    /// Loads parameters by name into `net`. A tensor whose shape differs is an error naming
    /// it; a tensor the file lacks is an error unless `missing == .keep` (for example a
    /// fresh fine-tuning head); tensors in the file that the model lacks are listed in
    /// the return value (for example a pretraining head when fine-tuning).
    @discardableResult
    public static func read(into net: SKESLNetwork, from file: H5File, missing: Missing = .error,
                            only prefixes: [String]? = nil) throws -> (loaded: [String], unused: [String]) {
        guard file.exists(group) else { throw ModelError("\(file.path): no \(group) group: not a skesl weights file") }
        let names = Set(try file.children(of: group))
        var loaded: [String] = []
        for e in net.layout.entries where prefixes.map({ ps in ps.contains { e.name.hasPrefix($0) } }) ?? true {
            guard names.contains(e.name) else {
                if missing == .keep { continue }
                throw ModelError("\(file.path): tensor \(e.name) is missing (shape \(e.shape)); the file was written for another model configuration")
            }
            let ds = try file.dataset(group + "/" + e.name)
            let shape = try ds.shape()
            guard shape == e.shape else {
                throw ModelError("\(file.path): tensor \(e.name) has shape \(shape), the model expects \(e.shape): check the model config (hidden size, layers, feature dimensions)")
            }
            try ds.read(into: UnsafeMutableBufferPointer(start: net.params + e.offset, count: e.count))
            for i in 0..<e.count where !net.params[e.offset + i].isFinite {
                throw ModelError("\(file.path): tensor \(e.name) holds a non-finite value at index \(i)")
            }
            loaded.append(e.name)
        }
        let known = Set(net.layout.entries.map(\.name))
        return (loaded, names.filter { !known.contains($0) }.sorted())
    }

    public static func load(into net: SKESLNetwork, from path: String, missing: Missing = .error) throws {
        let f = try H5File.open(path)
        try read(into: net, from: f, missing: missing)
    }
}
