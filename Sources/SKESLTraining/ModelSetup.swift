// Building a run's model and text pipeline from its config: the BERT config and weights
// from a pretrained checkpoint (Hugging Face directory or skesl weights file), the
// tokenizer, the lexicon, and for fine-tuning the pretrained cross-modal encoder.
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLModel
import SKESLStore
import SKESLText
import SKESLHuggingFace

public enum ModelSetup {
    /// The model config this run builds: `model` with BERT's architecture taken from the
    /// pretrained weights when there are any, feature dimensions checked against the store.
    public static func modelConfig(_ rc: RunConfig, spec: FeatureSpec?) throws -> ModelConfig {
        var m = rc.resolvedModel
        if let bert = try pretrainedBertConfig(rc) {
            var b = bert
            // Dropout rates are training settings: the run's config decides them.
            b.hiddenDropoutProb = m.bert.hiddenDropoutProb
            b.attentionProbsDropoutProb = m.bert.attentionProbsDropoutProb
            m.bert = b
        }
        if !rc.initialize.checkpoint.isEmpty {
            // Fine-tuning from pretraining: the encoder's architecture is the pretrained one.
            let f = try H5File.open(rc.initialize.checkpoint)
            let pre = try WeightsFile.config(in: f)
            var cm = pre.crossmodal
            cm.dropout = m.crossmodal.dropout
            cm.maskModalityPadding = m.crossmodal.maskModalityPadding
            m.crossmodal = cm
            var b = pre.bert
            b.hiddenDropoutProb = m.bert.hiddenDropoutProb
            b.attentionProbsDropoutProb = m.bert.attentionProbsDropoutProb
            m.bert = b
        }
        if let s = spec, m.task != .textOnly {
            guard s.audioDim == m.crossmodal.audioDim, s.videoDim == m.crossmodal.videoDim else {
                throw ConfigError("the store's features (audio dim \(s.audioDim), video dim \(s.videoDim)) do not match the model's (model.crossmodal.audioDim \(m.crossmodal.audioDim), videoDim \(m.crossmodal.videoDim)): set them to the store's")
            }
        }
        try m.validate()
        return m
    }

    static func pretrainedBertConfig(_ rc: RunConfig) throws -> BertConfig? {
        let p = rc.initialize.bert
        if p.isEmpty { return nil }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
            throw ConfigError("initialize.bert: \(p): no such file or directory")
        }
        if isDir.boolValue { return try BertConfig.load(huggingFaceConfig: p + "/config.json") }
        return try WeightsFile.config(in: try H5File.open(p)).bert
    }

    /// Loads pretrained weights into a fresh network (before the rank-0 broadcast).
    public static func loadInitialWeights(_ rc: RunConfig, into net: SKESLNetwork, log: (String) -> Void) throws {
        let p = rc.initialize.bert
        if !p.isEmpty {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: p, isDirectory: &isDir)
            var weights = p
            var tmp: String? = nil
            if isDir.boolValue {
                tmp = NSTemporaryDirectory() + "skesl-bert-\(getpid()).h5"
                try HuggingFaceBert.importBert(from: p, to: tmp!)
                weights = tmp!
            }
            defer { if let t = tmp { unlink(t) } }
            let (loaded, _) = try WeightsFile.read(into: net, from: try H5File.open(weights), missing: .keep, only: ["bert."])
            guard !loaded.isEmpty else { throw ConfigError("initialize.bert: \(p) holds no bert.* tensors") }
            log("BERT weights: \(loaded.count) tensors from \(p)")
        }
        let c = rc.initialize.checkpoint
        if !c.isEmpty {
            let (loaded, _) = try WeightsFile.read(into: net, from: try H5File.open(c), missing: .keep, only: ["bert.", "crossmodal."])
            guard loaded.contains(where: { $0.hasPrefix("crossmodal.") }) || net.config.task == .textOnly else {
                throw ConfigError("initialize.checkpoint: \(c) holds no cross-modal encoder tensors (is it a pretraining checkpoint?)")
            }
            log("pretrained weights: \(loaded.count) tensors (BERT and cross-modal encoder) from \(c); head starts fresh")
        }
    }

    /// The tokenizer: data.tokenizer, else the pretrained BERT's (its directory, or the
    /// vocabulary stored in its weights file by import-hf).
    public static func tokenizer(_ rc: RunConfig) throws -> BertTokenizer {
        if !rc.data.tokenizer.isEmpty { return try BertTokenizer.load(rc.data.tokenizer) }
        for p in [rc.initialize.bert, rc.initialize.checkpoint] where !p.isEmpty {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: p, isDirectory: &isDir)
            if isDir.boolValue { return try BertTokenizer.load(p) }
            let f = try H5File.open(p)
            // A checkpoint names the tokenizer its run used (its stored run config).
            if !f.exists("/tokenizer/vocab"), f.hasAttribute("run_config_yaml"),
               let trained = try? RunConfigLoader.load(yamlText: try f.stringAttribute("run_config_yaml"), source: p),
               trained.data.tokenizer != rc.data.tokenizer || trained.initialize.bert != rc.initialize.bert {
                var inner = rc
                inner.data.tokenizer = trained.data.tokenizer
                inner.initialize.bert = trained.initialize.bert
                inner.initialize.checkpoint = ""
                if !inner.data.tokenizer.isEmpty || !inner.initialize.bert.isEmpty { return try tokenizer(inner) }
            }
            // The vocabulary and its settings (casing, accents) that import-hf stored.
            if let t = try HuggingFaceBert.readTokenizer(from: f) { return t }
        }
        throw ConfigError("no tokenizer: set data.tokenizer (--tokenizer) to a vocab.txt, tokenizer.json or model directory, or initialize.bert to a pretrained BERT")
    }

    public static func lexicon(_ rc: RunConfig) throws -> VaderLexicon {
        let p: String
        switch rc.data.lexicon {
        case .auto: p = try VaderLexicon.locateDefault()
        case .reference: p = try VaderLexicon.locateReference()
        case .file(let path): p = path
        }
        return try VaderLexicon.load(p, rule: lexiconRule(rc))
    }

    static func lexiconRule(_ rc: RunConfig) -> VaderLexicon.Rule {
        switch rc.data.lexiconRule {
        case .vader: return .vader
        case .reference: return .reference
        case .auto: return rc.data.lexicon == .reference ? .reference : .vader
        }
    }

    public static func textPipeline(_ rc: RunConfig, pretraining: Bool) throws -> TextPipeline {
        let tok = try tokenizer(rc)
        return try TextPipeline(tokenizer: tok, lexicon: pretraining ? try lexicon(rc) : nil, length: rc.data.textLength,
                                windowAttendsPadding: rc.data.windowAttendsPadding)
    }
}
