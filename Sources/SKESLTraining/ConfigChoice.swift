// A closed set of values in a config file (train.allreduce, train.selection.loss, …):
// an enum whose raw strings are what the file holds, so the file reads and writes the
// same text as a String did, while the code switches over cases the compiler checks.
// Decoding an unknown value fails with the choices in the message, which
// RunConfigLoader.describe turns into "KEY must be A, B or C (got X)".
import SKESLDistributed

public protocol ConfigChoice: RawRepresentable, CaseIterable, Codable, Sendable where RawValue == String {}

extension ConfigChoice {
    /// "a, b or c", in declaration order.
    public static var choices: String {
        let names = allCases.map(\.rawValue)
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let v = Self(rawValue: s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: ConfigChoiceMessage.prefix + "\(Self.choices) (got \(s))"))
        }
        self = v
    }
}

enum ConfigChoiceMessage {
    /// Marks a ConfigChoice decoding failure so that the key and the message read as one phrase.
    static let prefix = "must be "
}

extension TrainConfig {
    /// How the gradient sum runs (train.allreduce; docs/cluster.md): one of the reducer's
    /// modes, or `auto`, which picks one by where the ranks are (`resolved`).
    public enum AllReduce: String, ConfigChoice {
        /// All ranks on one host: `deferred`; ranks on several hosts: `poll`.
        case auto
        case thread, poll, deferred, shm

        /// The reducer's mode. On one host the sum is memory-bound work on the ranks' own
        /// cores with no network latency to hide: a communication thread overlapping it with
        /// backward takes that work (and its polling) from the compute thread's CPU, and MPI's
        /// non-blocking all-reduce does more of it than the blocking one (docs/scaling.md,
        /// "Why a rank is slow"). Across hosts, overlap hides the network's time.
        public func resolved(hosts: Int) -> GradientReducer.Progress {
            switch self {
            case .auto: return hosts > 1 ? .poll : .deferred
            case .thread: return .thread
            case .poll: return .poll
            case .deferred: return .deferred
            case .shm: return .shm
            }
        }
    }
}

extension SelectionConfig {
    /// The validation loss that picks the best epoch (train.selection.loss; Selection.swift).
    public enum Loss: String, ConfigChoice {
        /// The per-sample MAE (skesl's default).
        case sampleMean = "sample_mean"
        /// The released code's valid_epoch: the mean over batches of each batch's mean L1 loss.
        case batchMean = "batch_mean"
    }
}

extension DataConfig {
    /// How lexicon lines are read (data.lexiconRule; ModelSetup.lexiconRule).
    public enum LexiconRule: String, ConfigChoice {
        /// `reference` exactly when data.lexicon is "reference", else `vader`.
        case auto
        /// Tab-separated, as vaderSentiment reads it.
        case vader
        /// Whitespace-separated, as the released code's load_lexicon.
        case reference
    }
}

extension DataConfig {
    /// Which VADER lexicon pretraining masks with (data.lexicon): two named sources, or a
    /// file. The config holds the word or the path, as a string.
    public enum LexiconSource: Codable, Equatable, Sendable, CustomStringConvertible {
        /// vader_lexicon.txt of the vaderSentiment package in the project's venv.
        case auto
        /// The released SKESL code's data/vader_lexicon.txt (scripts/setup fetches it).
        case reference
        /// A lexicon file.
        case file(String)

        public init(_ s: String) { self = s == "auto" ? .auto : s == "reference" ? .reference : .file(s) }
        public var description: String {
            switch self { case .auto: return "auto"; case .reference: return "reference"; case .file(let p): return p }
        }
        public init(from decoder: Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(description)
        }
    }
}
