// Runs the built `skesl` binary (alone or under mpirun) on a tiny synthetic store and a
// tiny BERT, for the tests of the command line and of the whole training path (CLITests,
// TrainingTests). Every child has a timeout: a hung
// run fails the test, never CI.
import Foundation
import SKESLStore
import SKESLReporting
import XCTest
import SKESLHDF5
import SKESLModel
import SKESLTraining

public struct RunResult {
    public var status: Int32; public var out: String; public var err: String; public var seconds: Double
    public init(status: Int32, out: String, err: String, seconds: Double) { self.status = status; self.out = out; self.err = err; self.seconds = seconds }
}

public final class RunHarness {
    public let dir: String
    public let binary: String

    public init(_ name: String) throws {
        dir = NSTemporaryDirectory() + "skesl-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let found = [exe, exe.deletingLastPathComponent(), exe.deletingLastPathComponent().deletingLastPathComponent()]
            .map { $0.appendingPathComponent("skesl").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let b = found else {
            throw HarnessError("the skesl executable is not built next to the tests: run `swift build --build-tests` (scripts/test does)")
        }
        binary = b
        try SynthVocabulary.write(to: dir + "/vocab.txt")
    }
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    public struct HarnessError: Error, CustomStringConvertible { public let description: String; public init(_ d: String) { description = d } }

    /// A tiny run config: BERT of 1 layer, hidden 16; encoder e 8; features 6x5 audio, 4x7 video.
    /// `bert` replaces BERT's shape (the keys after vocab_size), `textLength` and `globalBatch`
    /// theirs, for tests that need steps of some length.
    public func writeConfig(_ name: String = "config.yaml", extra: String = "",
                            bert: String = "hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 24",
                            textLength: Int = 16, globalBatch: Int = 6) throws -> String {
        let vocab = SynthVocabulary.tokens.count
        let yaml = """
        runDir: \(dir)/run
        model:
          bert: {vocab_size: \(vocab), \(bert), hidden_dropout_prob: 0.1,
                 attention_probs_dropout_prob: 0.1}
          crossmodal: {layers: 2, attentionDim: 8, audioDim: 5, videoDim: 7, dropout: 0.5}
          head: {hidden: 8, dropout: 0.5}
        data:
          store: \(dir)/store
          tokenizer: \(dir)/vocab.txt
          textLength: \(textLength)
        train:
          epochs: 3
          globalBatch: \(globalBatch)
          seed: 11
          optimizer: {lr: 1.0e-3}
        \(extra)
        """
        let p = dir + "/" + name
        try yaml.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    public func synth(samples: Int = 30, labeled: Bool = false) throws {
        var args = ["synth", "--out", dir + "/store", "--samples", "\(samples)", "--audio-frames", "6", "--audio-dim", "5",
                    "--video-frames", "4", "--video-dim", "7", "--samples-per-shard", "13", "--seed", "3", "--overwrite"]
        if labeled { args.append("--labeled") }
        let r = try run(args)
        guard r.status == 0 else { throw HarnessError("synth failed: \(r.err)") }
    }

    /// Runs skesl (np > 0: under mpirun with np ranks; `launcher`: under that command instead). `killAfter`: a condition polled
    /// while it runs; when it holds, the process group gets `signal`. `environment`: extra
    /// variables for skesl (passed to every rank).
    @discardableResult
    public func run(_ args: [String], np: Int = 0, timeout: Double = 240, environment: [String: String] = [:],
             launcher: [String]? = nil, wrapper: [String]? = nil,
             signal: Int32 = SIGKILL, when killAfter: (() -> Bool)? = nil) throws -> RunResult {
        let p = Process()
        if let l = launcher {
            // Cluster/launch.sh (or another launcher) with its own options; it passes SKESL_*
            // variables to every rank itself.
            p.executableURL = URL(fileURLWithPath: l[0])
            p.arguments = Array(l.dropFirst()) + ["--exe", binary, "--"] + args
        } else if let w = wrapper {
            // A script that takes the program and its arguments (scripts/netns-mpi-run.sh).
            p.executableURL = URL(fileURLWithPath: w[0])
            p.arguments = Array(w.dropFirst()) + [binary] + args
        } else if np > 0 {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
            p.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "\(np)", "--mca", "btl", "self,vader,tcp"]
                + environment.keys.sorted().flatMap { ["-x", $0] } + [binary] + args
        } else {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = args
        }
        // The test process may itself be an MPI singleton (other suites initialise MPI): its
        // OMPI_/PMIX_ variables would make mpirun believe it runs inside a job.
        var env = ProcessInfo.processInfo.environment.filter { k, _ in
            !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_", "PRTE_"].contains { k.hasPrefix($0) }
        }
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        env.merge(environment) { _, new in new }
        p.environment = env
        let outURL = URL(fileURLWithPath: dir + "/out-\(UUID().uuidString)"), errURL = URL(fileURLWithPath: dir + "/err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: outURL)
        p.standardError = try FileHandle(forWritingTo: errURL)
        let t0 = Date()
        try p.run()
        var killed = false
        while p.isRunning {
            if Date().timeIntervalSince(t0) > timeout {
                kill(p.processIdentifier, SIGKILL); p.waitUntilExit()
                throw HarnessError("skesl \(args.joined(separator: " ")) did not finish in \(Int(timeout)) s: \((try? String(contentsOf: errURL, encoding: .utf8)) ?? "")")
            }
            if !killed, let cond = killAfter, cond() {
                killed = true
                kill(p.processIdentifier, signal)
            }
            usleep(20_000)
        }
        return RunResult(status: p.terminationStatus, out: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                         err: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "", seconds: Date().timeIntervalSince(t0))
    }

    /// Parameters of a checkpoint by name.
    public func parameters(_ path: String) throws -> [String: [Float]] {
        let f = try H5File.open(path)
        var out: [String: [Float]] = [:]
        for n in try f.children(of: "/weights") { out[n] = try f.read("/weights/" + n, as: Float.self).values }
        return out
    }

    /// Weights and both Adam moments of a checkpoint, by dataset path ("/weights/NAME", ...).
    public func checkpointState(_ path: String) throws -> [String: [Float]] {
        let f = try H5File.open(path)
        var out: [String: [Float]] = [:]
        for g in ["/weights", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"] {
            for n in try f.children(of: g) { out[g + "/" + n] = try f.read(g + "/" + n, as: Float.self).values }
        }
        return out
    }

    /// `pretrain -c cfg --run-dir DIR/run` with `extra`, under mpirun with `np` ranks.
    public func pretrain(_ cfg: String, np: Int, run: String, _ extra: [String],
                         environment: [String: String] = [:]) throws -> RunResult {
        try self.run(["pretrain", "-c", cfg, "--run-dir", dir + "/" + run] + extra, np: np, environment: environment)
    }

    /// The repository's root (for Cluster/ and scripts/).
    public static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    public func checkpoint(step: Int, run: String = "run") -> String { "\(dir)/\(run)/checkpoints/" + Checkpoint.fileName(step: step) }
}

/// max over tensors of max |a - b| / max |b|
public func maxRelativeDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
    var worst = 0.0
    for (k, vb) in b {
        guard let va = a[k], va.count == vb.count else { return .infinity }
        var d = 0.0, m = 0.0
        for i in 0..<vb.count { d = max(d, Double(abs(va[i] - vb[i]))); m = max(m, Double(abs(vb[i]))) }
        worst = max(worst, d / max(m, 1e-12))
    }
    return worst
}

/// Two checkpoint states (RunHarness.checkpointState) hold the same tensors, bit for bit, and
/// include the second moments (so a comparison of weights alone cannot pass for one of all).
public func assertSameBits(_ a: [String: [Float]], _ b: [String: [Float]], _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), what, file: file, line: line)
    XCTAssertGreaterThan(a.keys.filter { $0.hasPrefix("/optimizer/exp_avg_sq/") }.count, 0, file: file, line: line)
    for (k, v) in b where a[k] != v {
        XCTFail("\(what): \(k) differs (max rel \(maxRelativeDifference([k: a[k] ?? []], [k: v])))", file: file, line: line)
    }
}

extension RunHarness {
    /// 2 ranks, checkpoints every 2 steps, 9 steps: the whole run ("full"), then the same run
    /// with every rank killing itself (SIGKILL) in step 7 with step 6's checkpoint on disk
    /// ("cut"), `afterKill`, and its resume; step 9 of both must hold the same bits.
    public func assertKilledRunResumesBitwise(_ cfg: String, _ args: [String], environment: [String: String] = [:],
                                              afterKill: () throws -> Void = {}, _ what: String,
                                              file: StaticString = #filePath, line: UInt = #line) throws {
        let run = ["--max-steps", "9", "--epochs", "20"] + args
        let full = try pretrain(cfg, np: 2, run: "full", run, environment: environment)
        XCTAssertEqual(full.status, 0, full.err, file: file, line: line)
        let cut = try pretrain(cfg, np: 2, run: "cut", run, environment: environment.merging(["SKESL_FAULT_KILL_AT_STEP": "7"]) { $1 })
        XCTAssertNotEqual(cut.status, 0, "the run was meant to be killed: \(cut.err)", file: file, line: line)
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint(step: 6, run: "cut") + ".done"), cut.err, file: file, line: line)
        try afterKill()
        let resumed = try pretrain(cfg, np: 2, run: "cut", run + ["--resume", "auto"], environment: environment)
        XCTAssertEqual(resumed.status, 0, resumed.err, file: file, line: line)
        XCTAssertTrue(resumed.err.contains("resumed from"), resumed.err, file: file, line: line)
        assertSameBits(try checkpointState(checkpoint(step: 9, run: "cut")), try checkpointState(checkpoint(step: 9, run: "full")),
                       what, file: file, line: line)
    }
}
