// The records of a run's metrics log (RUN_DIR/metrics.jsonl), one JSON object per line,
// told apart by "kind". The schema is documented in docs/metrics-log.md; keep both in step.
// Every record carries "time": wall-clock seconds since 1970 (UTC) when it was written.
// A non-finite number (a diverged loss) is written as the string "NaN", "Infinity" or
// "-Infinity"; an undefined metric inside "metrics" is written as null.
import Foundation
import SKESLKernels

/// "run_start": a run (or a resumed run) begins.
public struct RunStartRecord: Codable, Equatable, Sendable {
    public var time: Double
    public var run: String              // run name (usually the run directory's name)
    public var phase: String            // "pretrain" or "finetune" (free text for other tools)
    public var worldSize: Int
    public var epochs: Int?             // planned epochs
    public var stepsPerEpoch: Int?      // optimizer steps per epoch (all ranks together)
    public var batchSize: Int?          // global batch size
    public var resumedFromEpoch: Int?   // set when resuming from a checkpoint
    public var config: LogJSON          // the full configuration, as loaded
    public var versions: [String: String]  // e.g. skesl, swift, mpi, openblas, hdf5
    public var blas: BLASReport?        // OpenBLAS core type, how it was chosen, rank 0's sgemm rate
    public var placement: PlacementReport?  // every rank's host, CPUs and physical cores
    public var gradientSum: String?     // how the ranks sum gradients (train.allreduce resolved), e.g. "MPI all-reduce, deferred progress"

    public init(time: Double, run: String, phase: String, worldSize: Int, epochs: Int? = nil,
                stepsPerEpoch: Int? = nil, batchSize: Int? = nil, resumedFromEpoch: Int? = nil,
                config: LogJSON = .object([:]), versions: [String: String] = [:], blas: BLASReport? = nil,
                placement: PlacementReport? = nil, gradientSum: String? = nil) {
        self.time = time; self.run = run; self.phase = phase; self.worldSize = worldSize
        self.epochs = epochs; self.stepsPerEpoch = stepsPerEpoch; self.batchSize = batchSize
        self.resumedFromEpoch = resumedFromEpoch; self.config = config; self.versions = versions; self.blas = blas
        self.placement = placement; self.gradientSum = gradientSum
    }

    enum CodingKeys: String, CodingKey {
        case time, run, phase, worldSize = "world_size", epochs, stepsPerEpoch = "steps_per_epoch",
             batchSize = "batch_size", resumedFromEpoch = "resumed_from_epoch", config, versions, blas, placement,
             gradientSum = "gradient_sum"
    }
}

/// "train": training over an interval of optimizer steps (written every N steps/seconds).
public struct TrainRecord: Codable, Equatable, Sendable {
    public var time: Double
    public var epoch: Int               // 1-based
    public var step: Int                // global optimizer steps done at the end of the interval
    public var epochStep: Int           // steps done in this epoch at the end of the interval
    public var steps: Int               // optimizer steps in the interval
    public var samples: Int             // samples trained on in the interval (all ranks)
    public var loss: Double             // mean loss per sample over the interval
    public var lr: [String: Double]     // learning rate per parameter group
    public var samplesPerSecond: Double // samples / wall seconds of the interval
    public var skipped: Int             // samples skipped in the interval (bad data)

    public init(time: Double, epoch: Int, step: Int, epochStep: Int, steps: Int, samples: Int,
                loss: Double, lr: [String: Double], samplesPerSecond: Double, skipped: Int = 0) {
        self.time = time; self.epoch = epoch; self.step = step; self.epochStep = epochStep
        self.steps = steps; self.samples = samples; self.loss = loss; self.lr = lr
        self.samplesPerSecond = samplesPerSecond; self.skipped = skipped
    }

    enum CodingKeys: String, CodingKey {
        case time, epoch, step, epochStep = "epoch_step", steps, samples, loss, lr,
             samplesPerSecond = "samples_per_s", skipped
    }
}

/// "eval": evaluation of one split after an epoch.
public struct EvalRecord: Codable, Equatable, Sendable {
    public var time: Double
    public var epoch: Int
    public var split: String            // "valid" or "test"
    public var loss: Double             // mean loss per sample (L1 in SKESL)
    public var samples: Int
    public var metrics: RegressionMetrics?  // fine-tuning only (pretraining targets are not labels)

    public init(time: Double, epoch: Int, split: String, loss: Double, samples: Int,
                metrics: RegressionMetrics? = nil) {
        self.time = time; self.epoch = epoch; self.split = split; self.loss = loss
        self.samples = samples; self.metrics = metrics
    }
}

/// "checkpoint": a checkpoint file was written.
public struct CheckpointRecord: Codable, Equatable, Sendable {
    public var time: Double
    public var epoch: Int
    public var step: Int
    public var path: String             // relative to the run directory when inside it
    /// A CheckpointReason's word when skesl wrote it; read as text, so that a log from
    /// another writer (the report's fixtures say "snapshot") still reads.
    public var reason: String
    public var bytes: Int?

    public init(time: Double, epoch: Int, step: Int, path: String, reason: String, bytes: Int? = nil) {
        self.time = time; self.epoch = epoch; self.step = step; self.path = path
        self.reason = reason; self.bytes = bytes
    }
}

/// "run_end": the run stopped (normally or not).
public struct RunEndRecord: Codable, Equatable, Sendable {
    public var time: Double
    public var status: RunStatus
    public var epochs: Int              // epochs completed
    public var steps: Int               // optimizer steps done
    public var elapsedSeconds: Double
    public var bestEpoch: Int?          // epoch with the lowest validation loss, if any
    public var message: String?         // the error, for a failed run

    public init(time: Double, status: RunStatus, epochs: Int, steps: Int, elapsedSeconds: Double,
                bestEpoch: Int? = nil, message: String? = nil) {
        self.time = time; self.status = status; self.epochs = epochs; self.steps = steps
        self.elapsedSeconds = elapsedSeconds; self.bestEpoch = bestEpoch; self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case time, status, epochs, steps, elapsedSeconds = "elapsed_s", bestEpoch = "best_epoch", message
    }
}

/// One line of the metrics log.
public enum MetricsRecord: Equatable, Sendable {
    case runStart(RunStartRecord)
    case train(TrainRecord)
    case eval(EvalRecord)
    case checkpoint(CheckpointRecord)
    case runEnd(RunEndRecord)
    case stepTimes(StepTimesRecord)
    /// A kind this version does not know (written by a newer skesl): kept, not interpreted.
    case unknown(kind: String)

    public var kind: String {
        switch self {
        case .runStart: return "run_start"
        case .train: return "train"
        case .eval: return "eval"
        case .checkpoint: return "checkpoint"
        case .runEnd: return "run_end"
        case .stepTimes: return "step_times"
        case .unknown(let k): return k
        }
    }

    private struct Kind: Codable { var kind: String }

    /// The record as one JSON line (no newline), keys sorted, "kind" included.
    public func jsonLine() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let body: Data
        switch self {
        case .runStart(let r): body = try enc.encode(r)
        case .train(let r): body = try enc.encode(r)
        case .eval(let r): body = try enc.encode(r)
        case .checkpoint(let r): body = try enc.encode(r)
        case .runEnd(let r): body = try enc.encode(r)
        case .stepTimes(let r): body = try enc.encode(r)
        case .unknown(let k): body = try enc.encode(Kind(kind: k))
        }
        // Put "kind" first so the line reads well; the object stays valid JSON.
        var text = String(decoding: body, as: UTF8.self)
        if case .unknown = self { return text }
        text.removeFirst()  // "{"
        let kindField = "{\"kind\":\"\(kind)\""
        return text == "}" ? kindField + "}" : kindField + "," + text
    }

    /// Parses one line; throws DecodingError / a message on a malformed line.
    public static func parse(line: String) throws -> MetricsRecord {
        let data = Data(line.utf8)
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let kind = try dec.decode(Kind.self, from: data).kind
        switch kind {
        case "run_start": return .runStart(try dec.decode(RunStartRecord.self, from: data))
        case "train": return .train(try dec.decode(TrainRecord.self, from: data))
        case "eval": return .eval(try dec.decode(EvalRecord.self, from: data))
        case "checkpoint": return .checkpoint(try dec.decode(CheckpointRecord.self, from: data))
        case "run_end": return .runEnd(try dec.decode(RunEndRecord.self, from: data))
        case "step_times": return .stepTimes(try dec.decode(StepTimesRecord.self, from: data))
        default: return .unknown(kind: kind)
        }
    }
}
