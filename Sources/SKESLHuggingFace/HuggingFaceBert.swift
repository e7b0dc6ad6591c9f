// Bringing a Hugging Face BERT checkpoint into the trainer's weights file and back.
//
// Import reads config.json, model.safetensors (or the shards that
// model.safetensors.index.json lists) and vocab.txt or tokenizer.json; it writes the
// encoder tensors as /weights/bert.<HF name> (float32, PyTorch shapes), the model config
// (its "bert" part from config.json, the rest defaults) as the root attribute
// `config_json`, and the vocabulary as /tokenizer/vocab with its settings, so that an
// export needs nothing else. BertModel checkpoints name tensors without the `bert.`
// prefix, BertForPreTraining and the task models with it; TensorFlow-converted ones
// may call LayerNorm parameters gamma and beta. Pooler and heads are left out.
import Foundation
import SKESLHDF5
import SKESLModel
import SKESLText

public struct HuggingFaceImportReport: Sendable {
    public var config: BertConfig
    public var imported: [String]          // trainer names, bert.*
    public var ignored: [String]           // checkpoint tensors not used (pooler, heads, buffers)
    public var convertedFrom: [String: String]  // trainer name -> dtype, when not F32
}

public enum HuggingFaceBert {
    static let tokenizerGroup = "/tokenizer"

    // MARK: import

    @discardableResult
    public static func importBert(from dir: String, to weightsPath: String) throws -> HuggingFaceImportReport {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw TextError("\(dir): not a directory; give the Hugging Face model directory (config.json, model.safetensors, vocab.txt)")
        }
        func file(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
        let configPath = file("config.json")
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw TextError("\(dir): no config.json; this is not a Hugging Face model directory")
        }
        try checkArchitecture(configPath)
        let bert: BertConfig
        do { bert = try BertConfig.load(huggingFaceConfig: configPath) } catch { throw TextError("\(error)") }
        let tokenizer = try BertTokenizer.load(dir)
        guard tokenizer.vocabularySize <= bert.vocabSize else {
            throw TextError("\(dir): the vocabulary has \(tokenizer.vocabularySize) tokens but config.json says vocab_size \(bert.vocabSize)")
        }

        // Which shard holds which tensor.
        var shards: [String: SafetensorsFile] = [:]
        var whereIs: [String: String] = [:]
        let single = file("model.safetensors"), index = file("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single) {
            let f = try SafetensorsFile(path: single)
            shards[single] = f
            for n in f.entries.keys { whereIs[n] = single }
        } else if FileManager.default.fileExists(atPath: index) {
            guard let d = FileManager.default.contents(atPath: index),
                  let j = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any],
                  let map = j["weight_map"] as? [String: String] else {
                throw TextError("\(index): not a safetensors index (no weight_map object)")
            }
            for (n, shard) in map {
                let p = file(shard)
                if shards[p] == nil { shards[p] = try SafetensorsFile(path: p) }
                guard shards[p]!.entries[n] != nil else { throw TextError("\(p): the index lists \(n) here but the shard lacks it") }
                whereIs[n] = p
            }
        } else {
            let bin = FileManager.default.fileExists(atPath: file("pytorch_model.bin"))
            throw TextError("\(dir): no model.safetensors nor model.safetensors.index.json" +
                            (bin ? " (only pytorch_model.bin: convert it once with transformers, `BertModel.from_pretrained(dir).save_pretrained(dir)` writes safetensors)" : ""))
        }

        var model = ModelConfig()
        model.bert = bert
        let layout = ParameterLayout(config: model)
        let out = try H5File.create(weightsPath)
        var report = HuggingFaceImportReport(config: bert, imported: [], ignored: [], convertedFrom: [:])
        var used = Set<String>()
        for e in layout.entries where e.group == .bert {
            let hf = String(e.name.dropFirst("bert.".count))
            var candidates = [hf, "bert." + hf]
            if hf.hasSuffix("LayerNorm.weight") { candidates += [hf, "bert." + hf].map { $0.replacingOccurrences(of: "LayerNorm.weight", with: "LayerNorm.gamma") } }
            if hf.hasSuffix("LayerNorm.bias") { candidates += [hf, "bert." + hf].map { $0.replacingOccurrences(of: "LayerNorm.bias", with: "LayerNorm.beta") } }
            guard let name = candidates.first(where: { whereIs[$0] != nil }), let shard = shards[whereIs[name]!] else {
                throw TextError("\(dir): the checkpoint has no tensor \(hf) (nor bert.\(hf)), which a BERT with \(bert.numHiddenLayers) layers needs; is config.json the checkpoint's own?")
            }
            let entry = shard.entries[name]!
            guard entry.shape == e.shape else {
                throw TextError("\(shard.path): tensor \(name) has shape \(entry.shape), config.json implies \(e.shape)")
            }
            let v = try shard.floats(name)
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw TextError("\(shard.path): tensor \(name) holds a non-finite value at index \(bad)")
            }
            try out.write(WeightsFile.group + "/" + e.name, v, shape: e.shape)
            used.insert(name)
            report.imported.append(e.name)
            if entry.dtype != "F32" { report.convertedFrom[e.name] = entry.dtype }
        }
        report.ignored = whereIs.keys.filter { !used.contains($0) }.sorted()
        try out.setAttribute("config_json", try WeightsFile.configJSON(model))
        try out.setAttribute("imported_from", dir)
        try writeTokenizer(tokenizer, to: out)
        try out.close()
        return report
    }

    static func checkArchitecture(_ configPath: String) throws {
        guard let d = FileManager.default.contents(atPath: configPath),
              let j = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
            throw TextError("\(configPath): not a JSON object")
        }
        if let t = j["model_type"] as? String, t != "bert" {
            throw TextError("\(configPath): model_type is \(t); only BERT checkpoints (model_type bert) can be imported")
        }
        if let p = j["position_embedding_type"] as? String, p != "absolute" {
            throw TextError("\(configPath): position_embedding_type \(p) is not supported (only absolute)")
        }
    }

    /// The vocabulary (id order) and the normaliser settings, so an export can write vocab.txt.
    static func writeTokenizer(_ t: BertTokenizer, to f: H5File) throws {
        try f.writeStrings(tokenizerGroup + "/vocab", t.tokens)
        let o = t.options
        let settings: [String: Any] = ["do_lower_case": o.lowercase, "strip_accents": o.stripAccents.map { $0 as Any } ?? NSNull(),
                                       "tokenize_chinese_chars": o.handleChineseChars, "unk_token": o.unkToken]
        let json = try JSONSerialization.data(withJSONObject: settings, options: [.sortedKeys])
        try f.setAttribute("tokenizer_config_json", String(decoding: json, as: UTF8.self), on: tokenizerGroup)
    }

    /// The tokenizer `writeTokenizer` stored in a weights file (vocabulary and settings), or
    /// nil when the file holds none.
    public static func readTokenizer(from f: H5File) throws -> BertTokenizer? {
        guard f.exists(tokenizerGroup + "/vocab") else { return nil }
        var opts = BertTokenizerOptions.uncased
        if f.hasAttribute("tokenizer_config_json", on: tokenizerGroup) {
            let text = try f.stringAttribute("tokenizer_config_json", on: tokenizerGroup)
            guard let j = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                throw TextError("\(f.path): \(tokenizerGroup) tokenizer_config_json is not a JSON object")
            }
            opts = BertTokenizer.applying(tokenizerConfig: j, to: opts)
        }
        return try BertTokenizer.vocabulary(try f.readStrings(tokenizerGroup + "/vocab"), options: opts,
                                            source: f.path + ":" + tokenizerGroup)
    }

    // MARK: export

    /// Writes `dir`/config.json, model.safetensors (F32, BertModel names) and the
    /// vocabulary: copied from `tokenizer` (a directory, vocab.txt or tokenizer.json) when
    /// given, else the one stored at import.
    /// Writes into a temporary sibling folder and renames it into place only when every file
    /// is written: a refusal (no vocabulary) or a failure leaves `dir` as it was, and never a
    /// folder that `from_pretrained` would load without its vocabulary.
    public static func exportBert(from weightsPath: String, to dir: String, tokenizer: String? = nil) throws {
        let target = (dir as NSString).standardizingPath
        let parent = (target as NSString).deletingLastPathComponent
        if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        let partial = target + ".partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            try writeBert(from: weightsPath, to: partial, tokenizer: tokenizer)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        // An existing export is replaced whole: moved aside, the new one renamed in, the old removed.
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: target, isDirectory: &isDir) {
            guard isDir.boolValue else {
                try? FileManager.default.removeItem(atPath: partial)
                throw TextError("\(dir) exists and is not a directory; choose another output path")
            }
            let old = target + ".old-\(getpid())"
            guard rename(target, old) == 0 else {
                try? FileManager.default.removeItem(atPath: partial)
                throw TextError("\(dir): cannot move the existing export aside: \(String(cString: strerror(errno)))")
            }
            guard rename(partial, target) == 0 else {
                let e = String(cString: strerror(errno))
                _ = rename(old, target)
                try? FileManager.default.removeItem(atPath: partial)
                throw TextError("\(dir): cannot move the new export into place: \(e); the old one is kept")
            }
            try? FileManager.default.removeItem(atPath: old)
        } else {
            guard rename(partial, target) == 0 else {
                let e = String(cString: strerror(errno))
                try? FileManager.default.removeItem(atPath: partial)
                throw TextError("\(dir): cannot move the export into place: \(e)")
            }
        }
    }

    static func writeBert(from weightsPath: String, to dir: String, tokenizer: String?) throws {
        let f = try H5File.open(weightsPath)
        let model: ModelConfig
        do { model = try WeightsFile.config(in: f) } catch { throw TextError("\(error)") }
        let layout = ParameterLayout(config: model)
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for e in layout.entries where e.group == .bert {
            let path = WeightsFile.group + "/" + e.name
            guard f.exists(path) else {
                throw TextError("\(weightsPath): tensor \(e.name) is missing; the file holds no complete BERT for its config")
            }
            let (v, shape) = try f.read(path, as: Float.self)
            guard shape == e.shape else {
                throw TextError("\(weightsPath): tensor \(e.name) has shape \(shape), its config implies \(e.shape)")
            }
            tensors.append((String(e.name.dropFirst("bert.".count)), shape, v))
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func file(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
        try SafetensorsFile.write(file("model.safetensors"), tensors: tensors)
        try writeConfig(model.bert, to: file("config.json"))

        if let src = tokenizer {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: src, isDirectory: &isDir) else {
                throw TextError("\(src): no such tokenizer file or directory")
            }
            _ = try BertTokenizer.load(src)   // refuse to copy something that is not a BERT vocabulary
            let names = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
            let files = isDir.boolValue ? names.map { (src as NSString).appendingPathComponent($0) } : [src]
            for s in files where FileManager.default.fileExists(atPath: s) {
                let d = file((s as NSString).lastPathComponent)
                try? FileManager.default.removeItem(atPath: d)
                try FileManager.default.copyItem(atPath: s, toPath: d)
            }
        } else if f.exists(tokenizerGroup + "/vocab") {
            let vocab = try f.readStrings(tokenizerGroup + "/vocab")
            try (vocab.joined(separator: "\n") + "\n").write(toFile: file("vocab.txt"), atomically: true, encoding: .utf8)
            var cfg: [String: Any] = ["tokenizer_class": "BertTokenizer", "model_max_length": model.bert.maxPositionEmbeddings]
            if f.hasAttribute("tokenizer_config_json", on: tokenizerGroup),
               let j = try JSONSerialization.jsonObject(with: Data(try f.stringAttribute("tokenizer_config_json", on: tokenizerGroup).utf8)) as? [String: Any] {
                cfg.merge(j) { a, _ in a }
            }
            try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: file("tokenizer_config.json")))
        } else {
            throw TextError("\(weightsPath): holds no vocabulary (it was not imported from Hugging Face); pass the tokenizer to copy (--tokenizer)")
        }
        try f.close()
    }

    /// The shortest decimal that reads back as this Float (1e-12, not 9.99999996e-13).
    static func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

    static func writeConfig(_ b: BertConfig, to path: String) throws {
        let j: [String: Any] = [
            "architectures": ["BertModel"], "model_type": "bert",
            "vocab_size": b.vocabSize, "hidden_size": b.hiddenSize, "num_hidden_layers": b.numHiddenLayers,
            "num_attention_heads": b.numAttentionHeads, "intermediate_size": b.intermediateSize,
            "max_position_embeddings": b.maxPositionEmbeddings, "type_vocab_size": b.typeVocabSize,
            "layer_norm_eps": decimal(b.layerNormEps), "hidden_dropout_prob": decimal(b.hiddenDropoutProb),
            "attention_probs_dropout_prob": decimal(b.attentionProbsDropoutProb), "pad_token_id": b.padTokenId,
            "hidden_act": b.hiddenAct, "position_embedding_type": "absolute", "initializer_range": 0.02,
        ]
        try JSONSerialization.data(withJSONObject: j, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
    }
}
