// Checkpoints in HDF5 (docs/checkpoint-format.md): parameters under /weights (PyTorch
// names), Adam moments per parameter under /optimizer, and the state needed to replay
// the run exactly (step, loader cursor, schedule epoch, seed, configs, store
// fingerprint, world size, code version), with a checksum over every tensor.
// Rank 0 writes `<name>.tmp`, fsyncs, renames it into place, fsyncs the directory, then
// writes `<name>.done` (llm.c's DONE files): a checkpoint without its DONE marker is
// incomplete and `--resume auto` passes it over.
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLModel

public let skeslCodeVersion = "0.1.0"

/// Where a run stands after its last completed step: everything besides the tensors that a
/// resume needs. One type for the checkpoint's attributes (H5Attributes, one attribute per
/// field, named by the coding keys), for reading them back, and for the broadcast from rank 0
/// to every rank (JSON): a field added here travels everywhere.
public struct TrainingState: Equatable, Sendable, Codable {
    public var step = 0                 // optimiser steps taken
    public var cursorEpoch = 0          // loader cursor after the last step
    public var cursorPosition = 0
    public var epochsCompleted = 0
    public var seed: UInt64 = 0
    public var bestValidLoss = Double.infinity
    public var bestEpoch = -1
    public var worldSize = 1
    public var storeFingerprint = ""
    public init() {}

    /// The checkpoint's attribute names (docs/checkpoint-format.md).
    enum CodingKeys: String, CodingKey {
        case step, seed
        case cursorEpoch = "cursor_epoch", cursorPosition = "cursor_position", epochsCompleted = "epochs_completed"
        case bestValidLoss = "best_valid_loss", bestEpoch = "best_epoch", worldSize = "world_size"
        case storeFingerprint = "store_fingerprint"
    }

    /// The epoch the last step belonged to, 1-based (a cursor at position 0 has just
    /// finished the epoch before it): what checkpoint records in the metrics log name.
    public var epochOfLastStep: Int { cursorPosition == 0 ? max(cursorEpoch, 1) : cursorEpoch + 1 }
}

public struct CheckpointInfo: Sendable {
    public var path: String
    public var step: Int
    public var complete: Bool
}

public enum Checkpoint {
    public static let format = "skesl-checkpoint"
    public static let formatVersion: Int64 = 1

    /// 64-bit checksum of float buffers (word-wise multiply-xorshift, order-sensitive).
    public static func checksum(_ parts: [(UnsafePointer<Float>, Int)]) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15
        for (p, n) in parts {
            p.withMemoryRebound(to: UInt32.self, capacity: n) { w in
                var i = 0
                while i + 1 < n {
                    let v = UInt64(w[i]) | (UInt64(w[i + 1]) << 32)
                    h = (h ^ v) &* 0xFF51_AFD7_ED55_8CCD
                    h ^= h >> 29
                    i += 2
                }
                if i < n { h = (h ^ UInt64(w[i])) &* 0xC4CE_B9FE_1A85_EC53; h ^= h >> 31 }
            }
            h = (h ^ UInt64(n)) &* 0xFF51_AFD7_ED55_8CCD
        }
        return h
    }

    static func checksum(net: SKESLNetwork, optimizer: Optimizer?) -> UInt64 {
        var parts: [(UnsafePointer<Float>, Int)] = [(UnsafePointer(net.params), net.layout.count)]
        if let o = optimizer { parts += [(UnsafePointer(o.m), o.count), (UnsafePointer(o.v), o.count)] }
        return checksum(parts)
    }

    /// Writes a checkpoint atomically (tmp + fsync + rename + DONE marker).
    /// On any failure the previous checkpoints are untouched and the error names the file.
    /// `owedCopies`: names (in the same directory) of the copies this checkpoint must be
    /// given (best.h5, milestones); it records them so that a resume from it completes any
    /// copy a crash interrupted (`completeOwedCopies`).
    @discardableResult
    public static func save(path: String, net: SKESLNetwork, optimizer: Optimizer?, state: TrainingState,
                            runConfigYAML: String, owedCopies: [String] = []) throws -> Int {
        let tmp = path + ".tmp"
        unlink(tmp)
        do {
            let f = try H5File.create(tmp)
            try WeightsFile.write(net, to: f)
            FaultInjection.at(.duringTmpWrite, step: state.step)
            if let o = optimizer {
                for e in net.layout.entries where e.offset >= net.layout.trainableStart {
                    let off = e.offset - net.layout.trainableStart
                    try f.write("/optimizer/exp_avg/" + e.name, UnsafeBufferPointer(start: o.m + off, count: e.count), shape: e.shape)
                    try f.write("/optimizer/exp_avg_sq/" + e.name, UnsafeBufferPointer(start: o.v + off, count: e.count), shape: e.shape)
                }
                try f.setAttribute("optimizer_step", Int64(o.step), on: "/optimizer")
                try f.setAttribute("optimizer_kind", o.config.kind.rawValue, on: "/optimizer")
            }
            try f.setAttribute("format", format)
            try f.setAttribute("format_version", formatVersion)
            try f.setAttribute("code_version", skeslCodeVersion)
            try H5Attributes.write(state, to: f)
            try f.setAttribute("run_config_yaml", runConfigYAML)
            try f.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
            try f.setAttribute("checksum", String(format: "%016llx", checksum(net: net, optimizer: optimizer)))
            if !owedCopies.isEmpty { try f.setAttribute(owedCopiesAttribute, owedCopies.joined(separator: "\n")) }
            try f.flush()
            try f.close()
            try fsyncPath(tmp)
        } catch {
            unlink(tmp)
            throw CheckpointError("writing checkpoint \(path) failed: \(error); the previous checkpoints are intact (check free disk space and permissions)")
        }
        FaultInjection.at(.beforeRename, step: state.step)
        guard rename(tmp, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw CheckpointError("writing checkpoint \(path) failed: rename: \(e); the previous checkpoints are intact")
        }
        let dir = (path as NSString).deletingLastPathComponent
        try? fsyncPath(dir.isEmpty ? "." : dir)
        FaultInjection.at(.afterRename, step: state.step)
        guard FileManager.default.createFile(atPath: path + ".done", contents: Data("ok\n".utf8)) else {
            throw CheckpointError("writing checkpoint \(path): cannot create its .done marker; the previous checkpoints are intact")
        }
        try? fsyncPath(path + ".done")
        FaultInjection.at(.afterDone, step: state.step)
        return (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    static func fsyncPath(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError("cannot open \(path) to fsync") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw CheckpointError("fsync \(path) failed: \(String(cString: strerror(errno)))") }
    }

    /// Reads the training state stored in a checkpoint (no tensors).
    public static func readState(_ f: H5File) throws -> TrainingState {
        guard f.hasAttribute("format"), try f.stringAttribute("format") == format else {
            throw CheckpointError("\(f.path): not a skesl checkpoint (no format attribute)")
        }
        return try H5Attributes.read(TrainingState.self, from: f)
    }

    /// Loads parameters (and optimiser state when given) and verifies the checksum.
    public static func load(path: String, into net: SKESLNetwork, optimizer: Optimizer?) throws -> TrainingState {
        let f = try H5File.open(path)
        let state = try readState(f)
        let stored = try WeightsFile.config(in: f)
        guard stored == net.config else {
            throw ConfigError("\(path): the checkpoint's model config differs from this run's (\(diff(stored, net.config))); resume with the run's own config")
        }
        try WeightsFile.read(into: net, from: f)
        if let o = optimizer {
            guard f.exists("/optimizer") else { throw CheckpointError("\(path): holds no optimiser state") }
            for e in net.layout.entries where e.offset >= net.layout.trainableStart {
                let off = e.offset - net.layout.trainableStart
                for (g, buf) in [("exp_avg", o.m), ("exp_avg_sq", o.v)] {
                    let ds = try f.dataset("/optimizer/\(g)/" + e.name)
                    guard try ds.shape() == e.shape else { throw CheckpointError("\(path): /optimizer/\(g)/\(e.name) has the wrong shape") }
                    try ds.read(into: UnsafeMutableBufferPointer(start: buf + off, count: e.count))
                }
            }
            o.setStep(Int(try f.attribute("optimizer_step", on: "/optimizer", as: Int64.self)))
        }
        let want = try f.stringAttribute("checksum")
        let have = String(format: "%016llx", optimizer.map { checksum(net: net, optimizer: $0) } ?? checksum([(UnsafePointer(net.params), net.layout.count)]))
        // The stored checksum covers every tensor written: the parameters, plus the optimiser
        // moments when the file has them. Loading parameters only (fine-tuning from a
        // pretraining checkpoint, evaluation) from a file that holds moments reads a part
        // of what was summed, so the sum cannot be checked and is skipped; every other
        // load (a resume, or a file without optimiser state) is checked.
        if optimizer != nil || !f.exists("/optimizer") {
            guard want == have else {
                throw CheckpointError("\(path): checksum mismatch (stored \(want), computed \(have)): the file is damaged")
            }
        }
        return state
    }

    static func diff(_ a: ModelConfig, _ b: ModelConfig) -> String {
        var d: [String] = []
        if a.bert != b.bert { d.append("bert") }
        if a.crossmodal != b.crossmodal { d.append("crossmodal") }
        if a.head != b.head { d.append("head") }
        if a.task != b.task { d.append("task \(a.task.rawValue) vs \(b.task.rawValue)") }
        if a.freezeBert != b.freezeBert { d.append("freezeBert") }
        if a.maskedMeanPooling != b.maskedMeanPooling { d.append("maskedMeanPooling") }
        return d.joined(separator: ", ")
    }

    public static func fileName(step: Int) -> String { String(format: "ckpt-step%09d.h5", step) }

    /// Checkpoints in a directory, newest step first.
    public static func list(_ dir: String) -> [CheckpointInfo] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var out: [CheckpointInfo] = []
        for n in names where n.hasPrefix("ckpt-step") && n.hasSuffix(".h5") {
            let digits = n.dropFirst("ckpt-step".count).dropLast(3)
            guard let s = Int(digits) else { continue }
            out.append(CheckpointInfo(path: dir + "/" + n, step: s, complete: FileManager.default.fileExists(atPath: dir + "/" + n + ".done")))
        }
        return out.sorted { $0.step > $1.step }
    }

    /// Keeps the newest `keepLast` step checkpoints; milestones and best live in other files.
    public static func prune(_ dir: String, keepLast: Int) {
        for c in list(dir).filter(\.complete).dropFirst(keepLast) {
            unlink(c.path + ".done")
            unlink(c.path)
        }
        // Incomplete leftovers older than the newest complete one.
        if let newest = list(dir).first(where: \.complete) {
            for c in list(dir) where !c.complete && c.step < newest.step { unlink(c.path) }
        }
    }

    static let owedCopiesAttribute = "owed_copies"

    /// The copies (names in the checkpoint's directory) a checkpoint owes, as recorded by save.
    public static func owedCopies(of path: String) throws -> [String] {
        let f = try H5File.open(path)
        guard f.hasAttribute(owedCopiesAttribute) else { return [] }
        return try f.stringAttribute(owedCopiesAttribute).split(separator: "\n").map(String.init)
    }

    /// Makes every copy `path` owes that is missing or holds another checkpoint (a crash
    /// between the checkpoint's `.done` and the end of its copies). Returns the copies made.
    /// Only for a checkpoint in its run's own checkpoint directory: the names are relative to it.
    @discardableResult
    public static func completeOwedCopies(of path: String) throws -> [String] {
        let dir = (path as NSString).deletingLastPathComponent
        var made: [String] = []
        for name in try owedCopies(of: path) {
            let dst = dir + "/" + name
            if isCopy(dst, of: path) { continue }
            try copy(path, to: dst)
            made.append(dst)
        }
        return made
    }

    /// Whether `dst` is a complete copy of the checkpoint `src` (same step and checksum).
    static func isCopy(_ dst: String, of src: String) -> Bool {
        guard FileManager.default.fileExists(atPath: dst + ".done"),
              let a = try? H5File.open(dst), let b = try? H5File.open(src) else { return false }
        return (try? a.attribute("step", as: Int64.self)) == (try? b.attribute("step", as: Int64.self))
            && (try? a.stringAttribute("checksum")) == (try? b.stringAttribute("checksum"))
    }

    /// Copies a finished checkpoint under another name (milestones, best), atomically: the
    /// old copy stays valid until the new one is renamed over it; `.done` follows the rename.
    public static func copy(_ src: String, to dst: String) throws {
        let tmp = dst + ".tmp"
        let step = (try? H5File.open(src).attribute("step", as: Int64.self)).map(Int.init) ?? -1
        let isBest = (dst as NSString).lastPathComponent == "best.h5"
        FaultInjection.at(isBest ? .beforeBestCopy : .beforeMilestoneCopy, step: step)
        unlink(tmp)
        do { try FileManager.default.copyItem(atPath: src, toPath: tmp) } catch {
            throw CheckpointError("copying checkpoint to \(dst) failed: \(error)")
        }
        try fsyncPath(tmp)
        FaultInjection.at(isBest ? .duringBestCopy : .duringMilestoneCopy, step: step)
        // The marker of the old copy goes first, so no instant shows a `.done` beside a
        // file that is not the copy it vouches for.
        unlink(dst + ".done")
        guard rename(tmp, dst) == 0 else { throw CheckpointError("copying checkpoint to \(dst) failed: rename: \(String(cString: strerror(errno)))") }
        let dir = (dst as NSString).deletingLastPathComponent
        try? fsyncPath(dir.isEmpty ? "." : dir)
        guard FileManager.default.createFile(atPath: dst + ".done", contents: Data("ok\n".utf8)) else {
            throw CheckpointError("copying checkpoint to \(dst): cannot create its .done marker")
        }
        try? fsyncPath(dst + ".done")
    }
}

/// A checkpoint file could not be written, fsynced, copied or read back, or it is damaged
/// (wrong format, missing optimiser state, checksum mismatch). A checkpoint that does not
/// fit this run's config (a different model) is a ConfigError: the fix is in the config.
public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
