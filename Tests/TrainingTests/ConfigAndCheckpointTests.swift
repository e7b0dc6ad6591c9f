import XCTest
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLModel
import SKESLTraining

final class RunConfigTests: XCTestCase {
    /// Typed flags (--store, --epochs, ...) go into the config as typed values: a path that
    /// YAML would read as a boolean, a number or null stays the path; --set still wins.
    func testTypedFlagsAreNotReadAsYAML() throws {
        typealias S = RunConfigLoader.Setting
        let c = try RunConfigLoader.load(path: nil, settings: [S("data.store", "yes", flag: "--store"), S("runDir", "1e5", flag: "--run-dir"),
                                                               S("data.tokenizer", "null", flag: "--tokenizer"), S("train.epochs", 7, flag: "--epochs"),
                                                               S("train.seed", UInt64.max, flag: "--seed")], validate: false)
        XCTAssertEqual(c.data.store, "yes"); XCTAssertEqual(c.runDir, "1e5"); XCTAssertEqual(c.data.tokenizer, "null")
        XCTAssertEqual(c.train.epochs, 7); XCTAssertEqual(c.train.seed, .max)
        let d = try RunConfigLoader.load(path: nil, settings: [S("train.epochs", 7, flag: "--epochs")], overrides: ["train.epochs=9"], validate: false)
        XCTAssertEqual(d.train.epochs, 9, "--set wins over a typed flag")
        // data.lexicon: the two named sources, or a path; written back as the same word.
        for (word, want) in [("auto", DataConfig.LexiconSource.auto), ("reference", .reference), ("/x/lex.txt", .file("/x/lex.txt"))] {
            let l = try RunConfigLoader.load(path: nil, settings: [S("data.lexicon", word, flag: "--lexicon")], validate: false)
            XCTAssertEqual(l.data.lexicon, want)
            XCTAssertTrue(try RunConfigLoader.yaml(l).contains("lexicon: \(word)"), word)
        }
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, settings: [S("train.epoch", 7, flag: "--epochs")], validate: false)) { e in
            XCTAssertTrue("\(e)".contains("--epochs: unknown key train.epoch"), "\(e)")
        }
    }

    func write(_ text: String) throws -> String {
        let p = NSTemporaryDirectory() + "skesl-cfg-\(UUID().uuidString).yaml"
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func testDefaultsAndOverrides() throws {
        let p = try write("task: finetune\ndata: {store: /x}\ntrain: {epochs: 7, optimizer: {lr: 1e-4, groupLR: {bert: 5.0e-6}}}\n")
        let c = try RunConfigLoader.load(path: p, overrides: ["train.globalBatch=16", "model.crossmodal.shared=false"])
        XCTAssertEqual(c.task, .finetune)
        XCTAssertEqual(c.train.epochs, 7)
        XCTAssertEqual(c.train.optimizer.lr, 1e-4)            // "1e-4" read as a number
        XCTAssertEqual(c.train.optimizer.groupLR["bert"], 5e-6)
        XCTAssertEqual(c.train.globalBatch, 16)
        XCTAssertFalse(c.model.crossmodal.shared)
        XCTAssertEqual(c.model.crossmodal.layers, 4)          // untouched default
        XCTAssertEqual(c.resolvedModel.task, .finetune)
        // The effective config round-trips through its YAML.
        let again = try RunConfigLoader.load(yamlText: try RunConfigLoader.yaml(c), source: "test")
        XCTAssertEqual(again, c)
    }

    func testUnknownKeyWrongTypeAndImpossibleValues() throws {
        let p1 = try write("data: {store: /x}\ntrain: {epoch: 3}\n")
        XCTAssertThrowsError(try RunConfigLoader.load(path: p1)) { e in
            XCTAssertTrue("\(e)".contains("unknown key train.epoch"), "\(e)")
            XCTAssertTrue("\(e)".contains("did you mean train.epochs"), "\(e)")
            XCTAssertTrue("\(e)".contains(p1), "\(e)")
        }
        let p2 = try write("data: {store: /x}\ntrain: {epochs: many}\n")
        XCTAssertThrowsError(try RunConfigLoader.load(path: p2)) { e in XCTAssertTrue("\(e)".contains("train.epochs has the wrong type"), "\(e)") }
        let p3 = try write("data: {store: /x}\ntrain: {globalBatch: 0}\n")
        XCTAssertThrowsError(try RunConfigLoader.load(path: p3)) { e in XCTAssertTrue("\(e)".contains("globalBatch must be at least 1"), "\(e)") }
        let p4 = try write("data: {store: /x}\nmodel: {bert: {hidden_size: 30, num_attention_heads: 4}}\n")
        XCTAssertThrowsError(try RunConfigLoader.load(path: p4)) { e in XCTAssertTrue("\(e)".contains("not a multiple"), "\(e)") }
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil)) { e in XCTAssertTrue("\(e)".contains("data.store is not set"), "\(e)") }
        XCTAssertThrowsError(try RunConfigLoader.load(path: "/nonexistent.yaml")) { e in XCTAssertTrue("\(e)".contains("cannot read"), "\(e)") }
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.optimizer.groupLR.encoder=1"])) { e in
            XCTAssertTrue("\(e)".contains("unknown parameter group"), "\(e)")
        }
    }

    /// train.threads 0 (the default) takes the launchers' OPENBLAS_NUM_THREADS; a count wins.
    func testThreadsComeFromTheLauncherUnlessSet() throws {
        let auto = try RunConfigLoader.load(path: nil, overrides: ["data.store=/x"])
        XCTAssertEqual(auto.train.threads, 0)
        XCTAssertEqual(try auto.train.resolvedThreads(environment: [:]), 1)
        XCTAssertEqual(try auto.train.resolvedThreads(environment: ["OPENBLAS_NUM_THREADS": "4"]), 4)
        XCTAssertThrowsError(try auto.train.resolvedThreads(environment: ["OPENBLAS_NUM_THREADS": "four"])) { e in
            XCTAssertTrue("\(e)".contains("OPENBLAS_NUM_THREADS=four is not a thread count"), "\(e)")
            XCTAssertTrue("\(e)".contains("set train.threads"), "\(e)")
        }
        let set = try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.threads=2"])
        XCTAssertEqual(try set.train.resolvedThreads(environment: ["OPENBLAS_NUM_THREADS": "4"]), 2)
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.threads=300"])) { e in
            XCTAssertTrue("\(e)".contains("train.threads must be between 1 and 256"), "\(e)")
        }
    }

    /// evaluate and predict: a count from the config or the launcher as in training, else the
    /// rank's share of its CPUs (bound: its own; unbound: the host's over its ranks there).
    func testInferenceThreadsUseTheRanksShareOfItsCPUs() throws {
        let auto = try RunConfigLoader.load(path: nil, overrides: ["data.store=/x"])
        func n(_ env: [String: String], _ allowed: Int, _ host: Int, _ ranks: Int, _ rc: RunConfig? = nil) throws -> Int {
            try (rc ?? auto).train.inferenceThreads(environment: env, allowedCPUs: allowed, hostCPUs: host, ranksOnHost: ranks).count
        }
        XCTAssertEqual(try n([:], 16, 16, 1), 16)
        XCTAssertEqual(try n([:], 16, 16, 4), 4)
        XCTAssertEqual(try n([:], 16, 16, 32), 1)
        XCTAssertEqual(try n([:], 2, 16, 8), 2, "bound: its own CPUs")
        XCTAssertEqual(try n(["OPENBLAS_NUM_THREADS": " "], 8, 8, 1), 8)
        XCTAssertEqual(try n(["OPENBLAS_NUM_THREADS": "3"], 8, 8, 1), 3)
        XCTAssertThrowsError(try n(["OPENBLAS_NUM_THREADS": "x"], 8, 8, 1))
        let set = try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.threads=2"])
        XCTAssertEqual(try n(["OPENBLAS_NUM_THREADS": "4"], 8, 8, 1, set), 2)
        XCTAssertEqual(try set.train.inferenceThreads(environment: [:], allowedCPUs: 8, hostCPUs: 8, ranksOnHost: 1).why, "train.threads")
        XCTAssertEqual(try auto.train.inferenceThreads(environment: [:], allowedCPUs: 16, hostCPUs: 16, ranksOnHost: 4).why,
                       "the host's 16 CPU(s) over its 4 rank(s)")
        XCTAssertEqual(try auto.train.inferenceThreads(environment: [:], allowedCPUs: 2, hostCPUs: 16, ranksOnHost: 4).why,
                       "the 2 CPU(s) this rank is bound to")
        // A container's CPU quota below the CPUs it sees: its whole CPUs over the host's ranks.
        func q(_ quota: Double, _ allowed: Int, _ host: Int, _ ranks: Int) throws -> (count: Int, why: String) {
            try auto.train.inferenceThreads(environment: [:], allowedCPUs: allowed, hostCPUs: host, ranksOnHost: ranks, quotaCPUs: quota)
        }
        XCTAssertEqual(try q(4.5, 64, 64, 1).count, 4)
        XCTAssertEqual(try q(4.5, 64, 64, 1).why, "a CPU quota of 4.5 CPUs over the host's 1 rank(s)")
        XCTAssertEqual(try q(8, 64, 64, 2).count, 4)
        XCTAssertEqual(try q(0.5, 64, 64, 1).count, 1, "at least one")
        XCTAssertEqual(try q(32, 16, 16, 1).why, "the host's 16 CPU(s) over its 1 rank(s)", "a quota above the CPUs changes nothing")
        XCTAssertEqual(try q(8, 2, 64, 4).count, 2, "bound to fewer CPUs than the quota's share")
        XCTAssertEqual(try q(Double.infinity, 8, 8, 1).count, 8)
        XCTAssertEqual(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.threads=6"]).train
                        .inferenceThreads(environment: [:], allowedCPUs: 64, hostCPUs: 64, ranksOnHost: 1, quotaCPUs: 2).count, 6,
                       "a count the user gave wins")
    }

    /// Closed sets are enums that read and write the same words as the strings they replaced.
    func testClosedSetsKeepTheirWords() throws {
        let c = try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.allreduce=thread", "train.selection.loss=batch_mean"])
        XCTAssertEqual(c.train.allreduce, .thread)
        XCTAssertEqual(c.train.selection.loss, .batchMean)
        let yaml = try RunConfigLoader.yaml(c)
        XCTAssertTrue(yaml.contains("allreduce: thread\n"), yaml)
        XCTAssertTrue(yaml.contains("loss: batch_mean\n"), yaml)
        XCTAssertTrue(try RunConfigLoader.yaml(RunConfig()).contains("allreduce: auto\n"), "the default is auto")
        // auto: deferred on one host (no communication thread on the compute cores), poll across hosts.
        XCTAssertEqual(TrainConfig.AllReduce.auto.resolved(hosts: 1), .deferred)
        XCTAssertEqual(TrainConfig.AllReduce.auto.resolved(hosts: 3), .poll)
        XCTAssertEqual(TrainConfig.AllReduce.poll.resolved(hosts: 1), .poll)
        XCTAssertEqual(TrainConfig.AllReduce.shm.resolved(hosts: 2), .shm)
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "train.allreduce=spin"])) { e in
            XCTAssertTrue("\(e)".contains("train.allreduce must be auto, thread, poll, deferred or shm (got spin)"), "\(e)")
        }
        // The run_end record and SKESL_STATUS_FILE hold these words (Cluster/slurm.sbatch reads them).
        XCTAssertEqual(RunStatus.allCases.map(\.rawValue), ["completed", "max_steps", "stopped", "interrupted", "failed"])
    }

    /// model.task follows from task and variant: a contradicting value is an error that names
    /// the key; the derived value (as a run's config.yaml records it) loads.
    func testModelTaskMustAgreeWithTaskAndVariant() throws {
        let bad = try write("task: finetune\nvariant: text_only\ndata: {store: /x}\nmodel: {task: finetune}\n")
        XCTAssertThrowsError(try RunConfigLoader.load(path: bad)) { e in
            XCTAssertTrue("\(e)".contains("\(bad): model.task is finetune, but task finetune with variant text_only builds the text_only model"), "\(e)")
        }
        XCTAssertThrowsError(try RunConfigLoader.load(path: nil, overrides: ["data.store=/x", "model.task=finetune"])) { e in
            XCTAssertTrue("\(e)".contains("--set model.task: model.task is finetune"), "\(e)")
        }
        var ft = RunConfig(); ft.task = .finetune; ft.data.store = "/x"; ft.model = ft.resolvedModel
        let recorded = try write(try RunConfigLoader.yaml(ft))
        XCTAssertEqual(try RunConfigLoader.load(path: recorded).model.task, .finetune)
    }

    func testShippedConfigsLoad() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Configs").path
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }
        XCTAssertGreaterThanOrEqual(files.count, 4)
        for f in files {
            XCTAssertNoThrow(try RunConfigLoader.load(path: dir + "/" + f, overrides: ["data.store=/x"]), f)
        }
        let ref = try RunConfigLoader.load(path: dir + "/pretrain-reference.yaml", overrides: ["data.store=/x"])
        XCTAssertEqual(ref.train.globalBatch, 32); XCTAssertEqual(ref.train.epochs, 100)
        XCTAssertEqual(ref.train.optimizer.lr, 1e-4); XCTAssertTrue(ref.model.freezeBert)
        XCTAssertEqual(ref.checkpoint.milestones, [1, 5, 10, 20, 50, 100])
        let mosi = try RunConfigLoader.load(path: dir + "/finetune-mosi.yaml", overrides: ["data.store=/x"])
        XCTAssertEqual(mosi.train.optimizer.groupLR, ["bert": 5e-6, "crossmodal": 5e-6, "head": 1e-4])
        XCTAssertEqual(mosi.train.schedule.kind, .cosine); XCTAssertEqual(mosi.train.schedule.tMax, 20)
        XCTAssertEqual(mosi.train.epochs, 200); XCTAssertFalse(mosi.model.freezeBert)
    }
}

final class CheckpointTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "skesl-ckpt-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func tinyModel() throws -> (SKESLNetwork, Optimizer) {
        var c = ModelConfig()
        c.bert.vocabSize = 20; c.bert.hiddenSize = 8; c.bert.numHiddenLayers = 1; c.bert.numAttentionHeads = 2
        c.bert.intermediateSize = 16; c.bert.maxPositionEmbeddings = 12
        c.crossmodal.attentionDim = 4; c.crossmodal.audioDim = 3; c.crossmodal.videoDim = 5; c.head.hidden = 4
        let net = try SKESLNetwork(config: c, seed: 1)
        let opt = Optimizer(config: OptimizerConfig(), layout: net.layout)
        for i in 0..<opt.count { opt.m[i] = Float(i) * 1e-3; opt.v[i] = Float(i) * 1e-6 }
        opt.setStep(17)
        return (net, opt)
    }

    func testRoundTripWithStateAndChecksum() throws {
        let (net, opt) = try tinyModel()
        var st = TrainingState(); st.step = 17; st.cursorEpoch = 2; st.cursorPosition = 96; st.seed = 5; st.worldSize = 3
        st.storeFingerprint = "abc"
        let path = dir + "/" + Checkpoint.fileName(step: 17)
        try Checkpoint.save(path: path, net: net, optimizer: opt, state: st, runConfigYAML: "task: pretrain\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: path + ".done"))
        let (net2, opt2) = try tinyModel()
        for i in 0..<opt2.count { opt2.m[i] = 0; opt2.v[i] = 0 }
        let back = try Checkpoint.load(path: path, into: net2, optimizer: opt2)
        XCTAssertEqual(back, st)
        XCTAssertEqual(opt2.step, 17)
        for i in 0..<net.layout.count { XCTAssertEqual(net.params[i], net2.params[i]) }
        for i in 0..<opt.count { XCTAssertEqual(opt.m[i], opt2.m[i]); XCTAssertEqual(opt.v[i], opt2.v[i]) }
        // Plain HDF5: optimizer state per parameter, by name.
        let f = try H5File.open(path)
        XCTAssertEqual(try f.shape("/optimizer/exp_avg/head.fc1.weight"), [4, 8])
        XCTAssertEqual(try f.attribute("cursor_position", as: Int64.self), 96)
    }

    func testDamagedCheckpointIsDetected() throws {
        let (net, opt) = try tinyModel()
        let path = dir + "/" + Checkpoint.fileName(step: 1)
        try Checkpoint.save(path: path, net: net, optimizer: opt, state: TrainingState(), runConfigYAML: "")
        // Flip one parameter in place (a silent disk error).
        let f = try H5File.open(path, writable: true)
        var w = try f.read("/weights/head.fc1.weight", as: Float.self)
        w.values[3] += 1
        try f.write("/weights/head.fc1.weight", w.values, shape: w.shape)
        try f.close()
        let (net2, opt2) = try tinyModel()
        XCTAssertThrowsError(try Checkpoint.load(path: path, into: net2, optimizer: opt2)) { e in
            XCTAssertTrue("\(e)".contains("checksum mismatch"), "\(e)")
            XCTAssertTrue(e is CheckpointError, "a damaged file is a CheckpointError, not a config error: \(type(of: e))")
        }
    }

    func testFailedWriteLeavesThePreviousCheckpoint() throws {
        let (net, opt) = try tinyModel()
        let good = dir + "/" + Checkpoint.fileName(step: 1)
        try Checkpoint.save(path: good, net: net, optimizer: opt, state: TrainingState(), runConfigYAML: "")
        // The temporary file's path is taken by a directory: the write fails like a full disk would.
        let bad = dir + "/" + Checkpoint.fileName(step: 2)
        try FileManager.default.createDirectory(atPath: bad + ".tmp/x", withIntermediateDirectories: true)
        XCTAssertThrowsError(try Checkpoint.save(path: bad, net: net, optimizer: opt, state: TrainingState(), runConfigYAML: "")) { e in
            XCTAssertTrue("\(e)".contains("previous checkpoints are intact"), "\(e)")
            XCTAssertTrue(e is CheckpointError, "\(type(of: e))")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
        let list = Checkpoint.list(dir)
        XCTAssertEqual(list.filter(\.complete).map(\.step), [1])
        let (net2, opt2) = try tinyModel()
        XCTAssertNoThrow(try Checkpoint.load(path: good, into: net2, optimizer: opt2))
    }

    func testPruneKeepsTheNewest() throws {
        let (net, opt) = try tinyModel()
        for s in 1...5 {
            try Checkpoint.save(path: dir + "/" + Checkpoint.fileName(step: s), net: net, optimizer: opt, state: TrainingState(), runConfigYAML: "")
        }
        FileManager.default.createFile(atPath: dir + "/" + Checkpoint.fileName(step: 6), contents: Data("partial".utf8))
        Checkpoint.prune(dir, keepLast: 2)
        let l = Checkpoint.list(dir)
        XCTAssertEqual(l.filter(\.complete).map(\.step), [5, 4])
        XCTAssertEqual(l.filter { !$0.complete }.map(\.step), [6])  // newer than every complete one: left for resume to report
    }
}
