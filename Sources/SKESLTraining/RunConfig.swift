// A run's whole configuration. Files are YAML or JSON; every key is checked against
// the defaults (an unknown key or a wrong type is an error that names the key and
// the file), then flags (`--set a.b=value`) override. Key names: `model.bert` uses
// Hugging Face config.json names; everything else is as written in Configs/*.yaml.
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLModel
import Yams

public enum RunTask: String, Codable, Sendable { case pretrain, finetune }

/// The paper's ablations.
public enum Variant: String, Codable, Sendable, CaseIterable {
    case full                       // BERT -> cross-modal encoder -> head
    case textOnly = "text_only"     // BERT -> mean pooling -> head
}

public struct DataConfig: Codable, Equatable, Sendable {
    /// Feature store directory (manifest.json and shards).
    public var store = ""
    /// Splits of a labeled store (fine-tuning and evaluation).
    public var trainSplit = "train", validSplit = "valid", testSplit = "test"
    /// Token sequence length L (39 in the reference).
    public var textLength = 39
    /// vocab.txt, tokenizer.json or a model directory; "" = the one that came with the BERT weights.
    public var tokenizer = ""
    /// VADER lexicon file; "auto" = vader_lexicon.txt of the vaderSentiment package in the
    /// project's venv; "reference" = the released SKESL code's file (scripts/setup writes it).
    public var lexicon = LexiconSource.auto
    /// How lexicon lines are read: "vader" (tab-separated, as vaderSentiment), "reference"
    /// (whitespace-separated, as the released code's load_lexicon), "auto" = reference
    /// exactly when `lexicon` is "reference" (docs/text.md, reference quirks).
    public var lexiconRule = LexiconRule.auto
    /// Reference quirk: a pretraining sample whose mask lies past the text length keeps an
    /// attention mask of all ones over its window, so BERT attends to [PAD] (docs/text.md).
    public var windowAttendsPadding = false
    public var skipBadSamples = false
    public var prefetch = 2
    /// Shard files each rank keeps open when reading through HDF5 (a global shuffle reads
    /// from all of them; each open shard costs about 1.2 MB of HDF5 per-file structures,
    /// no chunk cache: docs/feature-store.md, "Memory"). StoreLoader's own default is 2.
    public var maxOpenShards = 64
    /// Recompute each feature row's Fletcher32 on every read instead of on its first read
    /// after its shard is opened (docs/feature-store.md, "Reading rows").
    public var verifyEveryRead = false
    /// Shard-file pages (MB) a rank keeps mapped before releasing them to the page cache:
    /// bounds its file-backed resident memory (docs/feature-store.md, "Memory").
    public var residentShardMB = 2048
    /// Pretraining with a frozen BERT: encode every sample's [MASK] row once (BERT in eval
    /// mode, unlike the reference) and read it in later epochs (docs/performance.md).
    public var bertCache = false
    /// The cache is held in memory up to this size, else read row by row from its files.
    public var cacheMemoryMB: Double = 4096
    public init() {}
}

public struct InitConfig: Codable, Equatable, Sendable {
    /// Pretrained BERT: a Hugging Face directory (config.json + safetensors) or a skesl weights file.
    public var bert = ""
    /// A skesl checkpoint or weights file to start from (fine-tuning from pretraining):
    /// BERT and cross-modal tensors are taken from it, the head starts fresh.
    public var checkpoint = ""
    public init() {}
}

public struct TrainConfig: Codable, Equatable, Sendable {
    public var epochs = 100
    /// Samples per optimiser step over all ranks (the reference: 32), the same for any world size.
    public var globalBatch = 32
    /// Accumulation steps each rank splits its share into (memory).
    public var microBatches = 1
    public var seed: UInt64 = 0
    /// Stop after this many optimiser steps (0 = no limit): smoke runs and tests.
    public var maxSteps = 0
    /// Threads per rank, for OpenBLAS's products and the step's own loops (WorkerTeam).
    /// 0 (the default): OPENBLAS_NUM_THREADS where it is set, else 1. The launchers set that
    /// variable where they bind cores to each rank (Cluster/launch.sh --threads T,
    /// Cluster/slurm.sbatch from SLURM_CPUS_PER_TASK), so their ranks use the cores they hold
    /// without the config repeating the count (`resolvedThreads`).
    public var threads = 0
    public var optimizer = OptimizerConfig()
    public var schedule = ScheduleConfig()
    /// Gradient all-reduce bucket size in MiB, and how the sum runs: an MPI mode (poll, thread,
    /// deferred), shm, the sum in host shared memory (docs/cluster.md), or auto (deferred on one
    /// host, poll across hosts: AllReduce.resolved).
    public var bucketMB: Double = 8
    public var allreduce = AllReduce.auto
    /// ZeRO-1: reduce-scatter the gradients, each rank updates its 1/N shard of the
    /// parameters and optimiser moments, then an all-gather of the parameters (docs/scaling.md).
    public var shardOptimizer = false
    /// A barrier before the gradient wait on every step, to measure how long each rank
    /// waits for the slowest one apart from the all-reduce itself (costs one latency per step).
    public var diagnoseImbalance = false
    /// Each rank appends one line per step with its time by part to <runDir>/step-times/.
    public var stepTimeLog = true
    /// Evaluate the validation (and test) split every this many epochs (fine-tuning).
    public var evalEveryEpochs = 1
    /// How the best epoch (checkpoints/best.h5) is chosen.
    public var selection = SelectionConfig()
    public init() {}

    /// The rank's thread count: `threads`, or for 0 OPENBLAS_NUM_THREADS (else 1).
    public func resolvedThreads(environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> Int {
        try givenThreads(environment: env)?.count ?? 1
    }

    /// The count a user or launcher gave: `threads`, else OPENBLAS_NUM_THREADS where set; nil for neither.
    func givenThreads(environment env: [String: String]) throws -> (count: Int, why: String)? {
        if threads > 0 { return (threads, "train.threads") }
        guard let raw = env["OPENBLAS_NUM_THREADS"]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
        guard let n = Int(raw), (1...256).contains(n) else {
            throw ConfigError("OPENBLAS_NUM_THREADS=\(raw) is not a thread count between 1 and 256, and train.threads is 0 (take it from there): fix the variable, or set train.threads (--threads)")
        }
        return (n, "OPENBLAS_NUM_THREADS")
    }

    /// Threads per rank for `skesl evaluate` and `predict`: as training's where `threads` or
    /// OPENBLAS_NUM_THREADS gives a count; else this rank's share of the CPUs it may use (its own
    /// CPUs when bound to fewer than the host has, else the host's divided among its ranks on
    /// that host), where training's default would leave an inference on a workstation on one.
    /// Under a CPU quota (`quotaCPUs`, CPUQuota: a container's limit) of less than that, the
    /// quota's whole CPUs over the host's ranks: more threads would only take turns at it.
    /// Returns the count and where it came from (for the command's `threads:` line).
    public func inferenceThreads(environment env: [String: String] = ProcessInfo.processInfo.environment,
                                 allowedCPUs: Int, hostCPUs: Int, ranksOnHost: Int, quotaCPUs: Double? = nil) throws -> (count: Int, why: String) {
        if let given = try givenThreads(environment: env) { return given }
        let share = allowedCPUs < hostCPUs
            ? (min(256, max(1, allowedCPUs)), "the \(allowedCPUs) CPU(s) this rank is bound to")
            : (min(256, max(1, allowedCPUs / max(1, ranksOnHost))), "the host's \(allowedCPUs) CPU(s) over its \(ranksOnHost) rank(s)")
        if let q = quotaCPUs, q.isFinite, q > 0 {
            let n = max(1, Int(q.rounded(.down)) / max(1, ranksOnHost))
            if n < share.0 { return (n, String(format: "a CPU quota of %g CPUs over the host's %d rank(s)", q, ranksOnHost)) }
        }
        return share
    }
}

/// The validation loss that picks the best epoch. The reported metric stays the
/// per-sample MAE whatever this says.
public struct SelectionConfig: Codable, Equatable, Sendable {
    /// "sample_mean": the per-sample MAE (skesl's default). "batch_mean": the released
    /// code's valid_epoch, the mean over batches of `batch` samples (the last one partial)
    /// of each batch's mean L1 loss, so the last batch weighs as much as a full one.
    public var loss = Loss.sampleMean
    public var batch = 32
    /// Batches drawn from a fresh permutation of the split each evaluation (keyed by seed
    /// and epoch), as the reference's ablation scripts do (their validation loader has
    /// shuffle=True); false = split order, as main.py.
    public var shuffle = false
    public init() {}
}

public struct CheckpointConfig: Codable, Equatable, Sendable {
    /// Directory of checkpoints; "" = <runDir>/checkpoints.
    public var dir = ""
    /// Also write one every this many optimiser steps (0 = only at epoch ends).
    public var everySteps = 0
    public var keepLast = 3
    /// Epochs whose end-of-epoch checkpoint is kept for good (the reference's snapshots).
    public var milestones = [1, 5, 10, 20, 50, 100]
    public init() {}
}

public struct RunConfig: Codable, Equatable, Sendable {
    public var task: RunTask = .pretrain
    public var variant: Variant = .full
    public var runDir = "runs/skesl"
    public var model = ModelConfig()
    public var data = DataConfig()
    public var initialize = InitConfig()
    public var train = TrainConfig()
    public var checkpoint = CheckpointConfig()
    /// Seconds between plain progress lines when not on a terminal.
    public var logEverySeconds: Double = 10
    public init() {}

    /// The model as this run builds it (task from `task` and `variant`).
    public var resolvedModel: ModelConfig {
        var m = model
        switch (task, variant) {
        case (.pretrain, _): m.task = .pretrain
        case (.finetune, .full): m.task = .finetune
        case (.finetune, .textOnly): m.task = .textOnly
        }
        return m
    }
    public var checkpointDir: String { checkpoint.dir.isEmpty ? runDir + "/checkpoints" : checkpoint.dir }

    public func validate() throws {
        try resolvedModel.validate()
        try train.optimizer.validate()
        try train.schedule.validate()
        func bad(_ s: String) -> ConfigError { ConfigError(s) }
        if task == .pretrain && variant == .textOnly { throw bad("variant text_only is a fine-tuning ablation; pretraining needs the cross-modal encoder") }
        guard !data.store.isEmpty else { throw bad("data.store is not set: give the feature store directory (--store DIR)") }
        guard train.epochs >= 1 else { throw bad("train.epochs must be at least 1 (got \(train.epochs))") }
        guard train.globalBatch >= 1 else { throw bad("train.globalBatch must be at least 1 (got \(train.globalBatch))") }
        guard train.microBatches >= 1 else { throw bad("train.microBatches must be at least 1") }
        guard train.maxSteps >= 0 else { throw bad("train.maxSteps must be >= 0") }
        guard (0...256).contains(train.threads) else { throw bad("train.threads must be between 1 and 256, or 0 for OPENBLAS_NUM_THREADS (else 1)") }
        guard train.bucketMB > 0 else { throw bad("train.bucketMB must be > 0") }
        guard train.evalEveryEpochs >= 1 else { throw bad("train.evalEveryEpochs must be at least 1") }
        guard train.selection.batch >= 1 else { throw bad("train.selection.batch must be at least 1") }
        guard (2...512).contains(data.textLength) else { throw bad("data.textLength must lie in 2...512") }
        guard data.textLength <= model.bert.maxPositionEmbeddings else {
            throw bad("data.textLength \(data.textLength) exceeds model.bert.max_position_embeddings \(model.bert.maxPositionEmbeddings)")
        }
        guard data.prefetch >= 1 else { throw bad("data.prefetch must be at least 1") }
        guard data.maxOpenShards >= 1 else { throw bad("data.maxOpenShards must be at least 1") }
        guard data.residentShardMB >= 0 else { throw bad("data.residentShardMB must be at least 0") }
        if data.bertCache && !(task == .pretrain && model.freezeBert) {
            throw bad("data.bertCache needs pretraining with a frozen BERT (model.freezeBert: true)")
        }
        guard checkpoint.keepLast >= 1 else { throw bad("checkpoint.keepLast must be at least 1") }
        guard checkpoint.everySteps >= 0 else { throw bad("checkpoint.everySteps must be >= 0") }
        guard logEverySeconds > 0 else { throw bad("logEverySeconds must be > 0") }
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}

// MARK: loading

public enum RunConfigLoader {
    /// Keys whose children are free-form (maps) or optional (absent in the defaults).
    static let freeMaps: Set<String> = ["train.optimizer.groupLR"]
    static let optionalKeys: [String: Any] = ["train.optimizer.clipNorm": 1.0]

    /// A key set by a typed command-line flag (--store, --epochs, ...): its value goes into
    /// the config as it is, never through YAML, so a path such as `yes` or `1e5` stays a
    /// string. `flag` names it in errors.
    public struct Setting {
        public let key: String, value: Any, flag: String
        public init(_ key: String, _ value: String, flag: String) { self.key = key; self.value = value; self.flag = flag }
        public init(_ key: String, _ value: Int, flag: String) { self.key = key; self.value = value; self.flag = flag }
        public init(_ key: String, _ value: UInt64, flag: String) { self.key = key; self.value = NSNumber(value: value); self.flag = flag }
        public init(_ key: String, _ value: Bool, flag: String) { self.key = key; self.value = value; self.flag = flag }
    }

    /// Reads a YAML or JSON file, applies typed `settings` and then `overrides` ("a.b.c=value",
    /// value in YAML syntax: --set, which wins), checks every key and type, and validates.
    public static func load(path: String?, settings: [Setting] = [], overrides: [String] = [], validate: Bool = true) throws -> RunConfig {
        var text: String? = nil
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError("\(path): cannot read the config file (check the path)")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        return try load(text: text, source: path ?? "defaults", settings: settings, overrides: overrides, validate: validate)
    }

    /// As `load(path:)`, from the text of a YAML or JSON config (`source` names it in errors).
    static func load(text: String?, source: String, settings: [Setting] = [], overrides: [String], validate: Bool) throws -> RunConfig {
        var tree = try defaultsTree()
        // Where model.task was written, if anywhere: it follows from task and variant, so a
        // value that disagrees with them is an error (see checkModelTask) rather than being
        // replaced without a word.
        var modelTaskSource: String? = nil
        if let text {
            let parsed: Any?
            do { parsed = try Yams.load(yaml: text) } catch {
                throw ConfigError("\(source): not valid YAML/JSON: \(error)")
            }
            if let parsed {
                guard let dict = parsed as? [String: Any] else { throw ConfigError("\(source): the top level must be a mapping of keys") }
                try merge(&tree, dict, path: "", file: source)
                if (dict["model"] as? [String: Any])?["task"] != nil { modelTaskSource = source }
            }
        }
        for st in settings {
            try merge(&tree, nest(st.key, st.value), path: "", file: st.flag)
            if st.key == "model.task" { modelTaskSource = st.flag }
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw ConfigError("--set \(o): expected KEY=VALUE, e.g. --set train.epochs=5")
            }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            let value: Any = (try? Yams.load(yaml: raw)).flatMap { $0 } ?? raw
            guard !key.split(separator: ".").isEmpty else { throw ConfigError("--set \(o): empty key") }
            try merge(&tree, nest(key, value), path: "", file: "--set \(key)")
            if key == "model.task" { modelTaskSource = "--set model.task" }
        }
        let data = try JSONSerialization.data(withJSONObject: tree)
        let config: RunConfig
        do { config = try JSONDecoder().decode(RunConfig.self, from: data) } catch let e as DecodingError {
            throw ConfigError("\(source): \(describe(e))")
        }
        if validate {
            if let where_ = modelTaskSource { try checkModelTask(config, setIn: where_) }
            do { try config.validate() } catch { throw ConfigError("\(source): \(error)") }
        }
        return config
    }

    /// `model.task` is derived (RunConfig.resolvedModel): a run's own config.yaml holds the
    /// derived value, so it loads back; a value that contradicts `task` and `variant` is
    /// an error, since the run would silently build another model than the file says.
    static func checkModelTask(_ c: RunConfig, setIn source: String) throws {
        let derived = c.resolvedModel.task
        guard c.model.task == derived else {
            throw ConfigError("\(source): model.task is \(c.model.task.rawValue), but task \(c.task.rawValue) with variant \(c.variant.rawValue) builds the \(derived.rawValue) model; model.task follows from task and variant: remove it, or set task/variant instead")
        }
    }

    /// Parses a config given as text (the YAML stored in a checkpoint), without validation.
    public static func load(yamlText: String, source: String) throws -> RunConfig {
        try load(text: yamlText, source: source + ": stored config", overrides: [], validate: false)
    }

    /// "a.b.c" and a value as {a: {b: {c: value}}}.
    static func nest(_ key: String, _ value: Any) -> [String: Any] {
        var nested: Any = value
        for part in key.split(separator: ".").reversed() { nested = [String(part): nested] }
        return nested as? [String: Any] ?? [:]
    }

    static func defaultsTree() throws -> [String: Any] {
        let data = try JSONEncoder().encode(RunConfig())
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    static func merge(_ into: inout [String: Any], _ user: [String: Any], path: String, file: String) throws {
        for (k, v) in user {
            let full = path.isEmpty ? k : path + "." + k
            if freeMaps.contains(path) { into[k] = v; continue }
            guard let existing = into[k] ?? optionalKeys[full] else {
                let known = into.keys.sorted()
                let hint = known.min(by: { distance($0, k) < distance($1, k) }).map { " (did you mean \(path.isEmpty ? $0 : path + "." + $0)?)" } ?? ""
                throw ConfigError("\(file): unknown key \(full)\(hint); known keys here: \(known.joined(separator: ", "))")
            }
            if var sub = existing as? [String: Any] {
                guard let userSub = v as? [String: Any] else {
                    throw ConfigError("\(file): \(full) must be a mapping of keys, not \(type(of: v)) \(v)")
                }
                try merge(&sub, userSub, path: full, file: file)
                into[k] = sub
            } else if existing is NSNumber, let s = v as? String, let d = Double(s) {
                into[k] = d       // "1e-4" read as a string by YAML 1.1 rules
            } else {
                into[k] = v
            }
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case .typeMismatch(let t, let ctx): return "\(path(ctx.codingPath)) has the wrong type (expected \(t))"
        case .valueNotFound(let t, let ctx): return "\(path(ctx.codingPath)) is missing a value (expected \(t))"
        case .keyNotFound(let k, let ctx): return "\(path(ctx.codingPath + [k])) is missing"
        case .dataCorrupted(let ctx):
            // A ConfigChoice's message continues the key: "train.allreduce must be thread, poll, deferred or shm (got x)".
            let joint = ctx.debugDescription.hasPrefix(ConfigChoiceMessage.prefix) ? " " : ": "
            return path(ctx.codingPath) + joint + ctx.debugDescription
        @unknown default: return "\(e)"
        }
    }

    /// Levenshtein distance, for "did you mean".
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased()), b = Array(b.lowercased())
        var prev = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var cur = [i] + [Int](repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }

    /// The effective config as YAML (written into the run directory and checkpoints).
    public static func yaml(_ c: RunConfig) throws -> String {
        try YAMLEncoder().encode(c)
    }
}
