// All parameters in one flat Float32 buffer, all gradients in another, each tensor
// named as in PyTorch / Hugging Face. Order: bert.*, crossmodal.*, head.*; trainable
// tensors form a contiguous suffix, so a frozen BERT has no gradient storage at all
// and the gradient buffer is one span for the all-reduce and the optimiser.
import SKESLKernels

public enum ParamInit: Sendable, Equatable {
    case normal(std: Float)        // BERT Linear and Embedding weights (Hugging Face)
    case zeros, ones
    case kaimingUniform(fanIn: Int) // PyTorch nn.Linear weight: U(-1/sqrt(fanIn), 1/sqrt(fanIn))
    case linearBias(fanIn: Int)     // PyTorch nn.Linear bias: same bound
}

/// The optimiser's parameter groups, each with its own learning rate
/// (train.optimizer.groupLR): BERT, the cross-modal encoder, the head.
public enum ParameterGroup: String, CaseIterable, Codable, Sendable {
    case bert, crossmodal, head
}

public struct ParamEntry: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int          // into the parameter buffer
    public let group: ParameterGroup  // optimiser group
    public let initialiser: ParamInit
    public var count: Int { shape.reduce(1, *) }
}

public struct ParameterLayout: Sendable {
    public let entries: [ParamEntry]
    public let count: Int
    /// Offset where gradients start (parameters before it are frozen).
    public let trainableStart: Int
    public var trainableCount: Int { count - trainableStart }
    private let index: [String: Int]

    public func entry(_ name: String) -> ParamEntry? { index[name].map { entries[$0] } }
    public func offset(_ name: String) -> Int {
        guard let e = entry(name) else { preconditionFailure("no parameter \(name)") }
        return e.offset
    }

    public init(config: ModelConfig) {
        var list: [ParamEntry] = []
        var off = 0
        func add(_ name: String, _ shape: [Int], _ group: ParameterGroup, _ ini: ParamInit) {
            list.append(ParamEntry(name: name, shape: shape, offset: off, group: group, initialiser: ini))
            off += shape.reduce(1, *)
        }
        let b = config.bert, H = b.hiddenSize, I = b.intermediateSize
        let std: Float = 0.02
        // BERT as Hugging Face BertModel (without pooler).
        add("bert.embeddings.word_embeddings.weight", [b.vocabSize, H], .bert, .normal(std: std))
        add("bert.embeddings.position_embeddings.weight", [b.maxPositionEmbeddings, H], .bert, .normal(std: std))
        add("bert.embeddings.token_type_embeddings.weight", [b.typeVocabSize, H], .bert, .normal(std: std))
        add("bert.embeddings.LayerNorm.weight", [H], .bert, .ones)
        add("bert.embeddings.LayerNorm.bias", [H], .bert, .zeros)
        for l in 0..<b.numHiddenLayers {
            let p = "bert.encoder.layer.\(l)."
            // query, key and value weights adjacent (then their biases): one [3H, H] sgemm.
            for m in ["query", "key", "value"] {
                add(p + "attention.self.\(m).weight", [H, H], .bert, .normal(std: std))
            }
            for m in ["query", "key", "value"] {
                add(p + "attention.self.\(m).bias", [H], .bert, .zeros)
            }
            add(p + "attention.output.dense.weight", [H, H], .bert, .normal(std: std))
            add(p + "attention.output.dense.bias", [H], .bert, .zeros)
            add(p + "attention.output.LayerNorm.weight", [H], .bert, .ones)
            add(p + "attention.output.LayerNorm.bias", [H], .bert, .zeros)
            add(p + "intermediate.dense.weight", [I, H], .bert, .normal(std: std))
            add(p + "intermediate.dense.bias", [I], .bert, .zeros)
            add(p + "output.dense.weight", [H, I], .bert, .normal(std: std))
            add(p + "output.dense.bias", [H], .bert, .zeros)
            add(p + "output.LayerNorm.weight", [H], .bert, .ones)
            add(p + "output.LayerNorm.bias", [H], .bert, .zeros)
        }
        let bertEnd = off
        func linear(_ name: String, out: Int, in fanIn: Int, _ group: ParameterGroup) {
            add(name + ".weight", [out, fanIn], group, .kaimingUniform(fanIn: fanIn))
            add(name + ".bias", [out], group, .linearBias(fanIn: fanIn))
        }
        func layerNorm(_ name: String, _ n: Int, _ group: ParameterGroup) {
            add(name + ".weight", [n], group, .ones)
            add(name + ".bias", [n], group, .zeros)
        }
        if config.task != .textOnly {
            let c = config.crossmodal, e = c.attentionDim
            let sets = c.shared ? 1 : c.layers
            for l in 0..<sets {
                let p = "crossmodal.layers.\(l)."
                for (m, d) in [("cma_a", c.audioDim), ("cma_v", c.videoDim)] {
                    layerNorm(p + m + ".ln_text", H, .crossmodal)
                    layerNorm(p + m + ".ln_modality", d, .crossmodal)
                    linear(p + m + ".q", out: e, in: H, .crossmodal)
                    // k and v weights adjacent (then their biases): one [2e, d] sgemm.
                    add(p + m + ".k.weight", [e, d], .crossmodal, .kaimingUniform(fanIn: d))
                    add(p + m + ".v.weight", [e, d], .crossmodal, .kaimingUniform(fanIn: d))
                    add(p + m + ".k.bias", [e], .crossmodal, .linearBias(fanIn: d))
                    add(p + m + ".v.bias", [e], .crossmodal, .linearBias(fanIn: d))
                    linear(p + m + ".out", out: H, in: e, .crossmodal)
                }
                layerNorm(p + "ln", H, .crossmodal)
                linear(p + "fc", out: H, in: H, .crossmodal)
            }
        }
        linear("head.fc1", out: config.head.hidden, in: H, .head)
        linear("head.fc2", out: 1, in: config.head.hidden, .head)
        entries = list
        count = off
        trainableStart = config.freezeBert ? bertEnd : 0
        var idx: [String: Int] = [:]
        for (i, e) in list.enumerated() { idx[e.name] = i }
        index = idx
    }

    /// Fills `params` with PyTorch's default initialisation, each tensor drawn from the
    /// keyed generator with the stream named after the tensor (so adding a tensor
    /// elsewhere never changes another's values).
    public func initialise(_ params: UnsafeMutablePointer<Float>, seed: UInt64, padTokenId: Int? = 0) {
        for e in entries {
            let p = params + e.offset
            let rng = KeyedRandom(seed: seed, stream: "init:" + e.name)
            switch e.initialiser {
            case .normal(let std): rng.fillNormal(p, e.count, mean: 0, std: std)
            case .zeros: p.update(repeating: 0, count: e.count)
            case .ones: p.update(repeating: 1, count: e.count)
            case .kaimingUniform(let fanIn), .linearBias(let fanIn):
                let bound = 1 / Float(fanIn).squareRoot()
                rng.fillUniform(p, e.count, lo: -bound, hi: bound)
            }
            if e.name == "bert.embeddings.word_embeddings.weight", let pad = padTokenId, pad < e.shape[0] {
                (p + pad * e.shape[1]).update(repeating: 0, count: e.shape[1])
            }
        }
    }
}
