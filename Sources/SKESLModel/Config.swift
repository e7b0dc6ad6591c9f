// Model configuration: BERT (as Hugging Face's BertConfig), the cross-modal encoder
// and the heads (method sections 2 to 6).
import Foundation

public struct BertConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int = 30522
    public var hiddenSize: Int = 768
    public var numHiddenLayers: Int = 12
    public var numAttentionHeads: Int = 12
    public var intermediateSize: Int = 3072
    public var maxPositionEmbeddings: Int = 512
    public var typeVocabSize: Int = 2
    public var layerNormEps: Float = 1e-12
    public var hiddenDropoutProb: Float = 0.1
    public var attentionProbsDropoutProb: Float = 0.1
    public var padTokenId: Int = 0
    public var hiddenAct: String = "gelu"

    public init() {}
    public static let base = BertConfig()
    public static var large: BertConfig {
        var c = BertConfig(); c.hiddenSize = 1024; c.numHiddenLayers = 24
        c.numAttentionHeads = 16; c.intermediateSize = 4096; return c
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob", padTokenId = "pad_token_id"
        case hiddenAct = "hidden_act"
    }

    // Hugging Face config.json files carry many other keys: ignore them, default missing ones.
    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        var s = BertConfig()
        func get<T: Decodable>(_ k: CodingKeys, _ v: inout T) throws { if let x = try c.decodeIfPresent(T.self, forKey: k) { v = x } }
        try get(.vocabSize, &s.vocabSize); try get(.hiddenSize, &s.hiddenSize)
        try get(.numHiddenLayers, &s.numHiddenLayers); try get(.numAttentionHeads, &s.numAttentionHeads)
        try get(.intermediateSize, &s.intermediateSize); try get(.maxPositionEmbeddings, &s.maxPositionEmbeddings)
        try get(.typeVocabSize, &s.typeVocabSize)
        if let e = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) { s.layerNormEps = Float(e) }
        if let e = try c.decodeIfPresent(Double.self, forKey: .hiddenDropoutProb) { s.hiddenDropoutProb = Float(e) }
        if let e = try c.decodeIfPresent(Double.self, forKey: .attentionProbsDropoutProb) { s.attentionProbsDropoutProb = Float(e) }
        try get(.padTokenId, &s.padTokenId); try get(.hiddenAct, &s.hiddenAct)
        self = s
    }

    /// Reads a Hugging Face `config.json`.
    public static func load(huggingFaceConfig path: String) throws -> BertConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError("\(path): cannot read the BERT config.json")
        }
        do { let c = try JSONDecoder().decode(BertConfig.self, from: data); try c.validate(); return c }
        catch let e as ModelError { throw ModelError("\(path): \(e.message)") }
        catch { throw ModelError("\(path): not a valid BERT config.json (\(error))") }
    }

    public func validate() throws {
        guard hiddenSize > 0, numHiddenLayers >= 0, numAttentionHeads > 0, intermediateSize > 0,
              vocabSize > 0, maxPositionEmbeddings > 0, typeVocabSize > 0 else {
            throw ModelError("BERT config: sizes must be positive")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ModelError("BERT config: hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        guard hiddenAct == "gelu" else {
            throw ModelError("BERT config: hidden_act \(hiddenAct) is not supported (only the erf form \"gelu\")")
        }
        guard (0..<1).contains(hiddenDropoutProb), (0..<1).contains(attentionProbsDropoutProb) else {
            throw ModelError("BERT config: dropout probabilities must lie in [0, 1)")
        }
    }
}

/// Cross-modal encoder (method section 3) and head (section 4).
public struct CrossModalConfig: Codable, Equatable, Sendable {
    public var layers: Int = 4
    public var attentionDim: Int = 256        // e
    public var audioDim: Int = 33
    public var videoDim: Int = 709
    public var shared: Bool = true            // one parameter set for all layers, as the reference
    public var maskModalityPadding: Bool = false  // the reference attends over zero padding
    public var dropout: Float = 0.5
    public var layerNormEps: Float = 1e-5     // PyTorch nn.LayerNorm default
    public init() {}
}

public struct HeadConfig: Codable, Equatable, Sendable {
    public var hidden: Int = 256
    public var dropout: Float = 0.5
    public init() {}
}

/// What the model computes from BERT's last hidden state.
public enum ModelTask: String, Codable, Sendable {
    /// Cross-modal encoder, head at the first [MASK] row (pretraining).
    case pretrain
    /// Cross-modal encoder, mean pooling, head (fine-tuning).
    case finetune
    /// BERT, mean pooling, head: the text-only ablation.
    case textOnly = "text_only"
}

public struct ModelConfig: Codable, Equatable, Sendable {
    public var bert = BertConfig()
    public var crossmodal = CrossModalConfig()
    public var head = HeadConfig()
    public var task: ModelTask = .pretrain
    public var freezeBert: Bool = true
    public var maskedMeanPooling: Bool = false   // the reference averages over padding too
    public init() {}

    public func validate() throws {
        try bert.validate()
        guard crossmodal.layers >= 1 || task == .textOnly else { throw ModelError("crossmodal.layers must be at least 1") }
        guard crossmodal.attentionDim > 0, crossmodal.audioDim > 0, crossmodal.videoDim > 0 else {
            throw ModelError("crossmodal dimensions must be positive")
        }
        guard (0..<1).contains(crossmodal.dropout), (0..<1).contains(head.dropout) else {
            throw ModelError("dropout probabilities must lie in [0, 1)")
        }
        guard head.hidden > 0 else { throw ModelError("head.hidden must be positive") }
    }
}

public struct ModelError: Error, CustomStringConvertible {
    public let message: String
    public init(_ m: String) { message = m }
    public var description: String { message }
}
