// Reading a BERT vocabulary: a model directory, a `vocab.txt` (one token a line, the
// line number is the id) or a Hugging Face `tokenizer.json` with a WordPiece model.
import Foundation

extension BertTokenizer {
    /// The five special tokens of a BERT `vocab.txt` that are matched whole in text.
    static let bertSpecials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    /// Loads from a model directory (its `tokenizer.json`, else its `vocab.txt` with
    /// `tokenizer_config.json` when present), a `vocab.txt` or a `tokenizer.json`.
    /// `options` applies to a `vocab.txt` that has no `tokenizer_config.json` beside it.
    public static func load(_ path: String, options: BertTokenizerOptions = .uncased) throws -> BertTokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TextError("\(path): no such file or directory; give a model directory, a vocab.txt or a tokenizer.json")
        }
        if isDir.boolValue {
            let tj = (path as NSString).appendingPathComponent("tokenizer.json")
            let vt = (path as NSString).appendingPathComponent("vocab.txt")
            if FileManager.default.fileExists(atPath: tj) { return try load(tokenizerJSON: tj) }
            if FileManager.default.fileExists(atPath: vt) { return try load(vocabTxt: vt, options: options) }
            throw TextError("\(path): the directory holds neither tokenizer.json nor vocab.txt")
        }
        if path.hasSuffix(".json") { return try load(tokenizerJSON: path) }
        return try load(vocabTxt: path, options: options)
    }

    /// A `vocab.txt`; settings from a `tokenizer_config.json` in the same directory
    /// (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`) override `options`.
    public static func load(vocabTxt path: String, options: BertTokenizerOptions = .uncased) throws -> BertTokenizer {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TextError("\(path): cannot read the vocabulary file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TextError("\(path): the vocabulary is not UTF-8 text")
        }
        if text.hasPrefix("{") {
            throw TextError("\(path): looks like JSON, not a vocab.txt; name it tokenizer.json or pass the model directory")
        }
        let lines = universalLines(text)
        var opts = options
        let cfg = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tokenizer_config.json")
        if let d = FileManager.default.contents(atPath: cfg) {
            guard let j = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
                throw TextError("\(cfg): not a JSON object")
            }
            opts = applying(tokenizerConfig: j, to: opts)
        }
        return try vocabulary(lines, options: opts, source: path)
    }

    /// `options` with the settings of a Hugging Face `tokenizer_config.json` applied.
    public static func applying(tokenizerConfig j: [String: Any], to options: BertTokenizerOptions) -> BertTokenizerOptions {
        var opts = options
        if let v = j["do_lower_case"] as? Bool { opts.lowercase = v }
        if let v = j["strip_accents"] as? Bool { opts.stripAccents = v }
        if let v = j["tokenize_chinese_chars"] as? Bool { opts.handleChineseChars = v }
        if let v = j["unk_token"] as? String { opts.unkToken = v }
        return opts
    }

    /// A tokenizer over `tokens` (the id is the index), BERT's special tokens kept whole.
    public static func vocabulary(_ tokens: [String], options: BertTokenizerOptions, source: String) throws -> BertTokenizer {
        let present = Set(tokens)
        return try BertTokenizer(vocabulary: tokens.enumerated().map { ($0.element, $0.offset) },
                                 specialTokens: bertSpecials.filter { present.contains($0) }, options: options, source: source)
    }

    /// A Hugging Face `tokenizer.json` whose model is WordPiece, normaliser BertNormalizer
    /// (or none) and pre-tokeniser BertPreTokenizer.
    public static func load(tokenizerJSON path: String) throws -> BertTokenizer {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TextError("\(path): cannot read the tokenizer file")
        }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TextError("\(path): not a JSON object (truncated or not a tokenizer.json?)")
        }
        guard let model = root["model"] as? [String: Any], model["type"] as? String == "WordPiece" else {
            let t = ((root["model"] as? [String: Any])?["type"] as? String) ?? "none"
            throw TextError("\(path): the tokenizer model is \(t); only WordPiece (BERT) tokenizers are supported")
        }
        guard let vocabObj = model["vocab"] as? [String: Any] else {
            throw TextError("\(path): model.vocab is missing or not an object")
        }
        var vocab: [(String, Int)] = []
        vocab.reserveCapacity(vocabObj.count)
        for (t, v) in vocabObj {
            guard let n = v as? NSNumber else { throw TextError("\(path): the id of token \(t) is not a number") }
            vocab.append((t, n.intValue))
        }
        vocab.sort { $0.1 < $1.1 }
        var o = BertTokenizerOptions()
        o.lowercase = false; o.handleChineseChars = false; o.cleanText = false; o.stripAccents = false
        if let u = model["unk_token"] as? String { o.unkToken = u }
        if let p = model["continuing_subword_prefix"] as? String { o.continuingSubwordPrefix = p }
        if let m = model["max_input_chars_per_word"] as? NSNumber { o.maxInputCharsPerWord = m.intValue }
        switch root["normalizer"] {
        case let n as [String: Any]:
            guard n["type"] as? String == "BertNormalizer" else {
                throw TextError("\(path): normalizer \(n["type"] ?? "?") is not supported (only BertNormalizer)")
            }
            o.cleanText = n["clean_text"] as? Bool ?? true
            o.handleChineseChars = n["handle_chinese_chars"] as? Bool ?? true
            o.lowercase = n["lowercase"] as? Bool ?? true
            o.stripAccents = n["strip_accents"] as? Bool   // null: follow lowercase
        case nil, is NSNull: break
        default: throw TextError("\(path): normalizer is not an object")
        }
        if let p = root["pre_tokenizer"] as? [String: Any], p["type"] as? String != "BertPreTokenizer" {
            throw TextError("\(path): pre_tokenizer \(p["type"] ?? "?") is not supported (only BertPreTokenizer)")
        }
        var specials: [String] = []
        for case let a as [String: Any] in (root["added_tokens"] as? [Any]) ?? [] {
            guard let content = a["content"] as? String, let id = (a["id"] as? NSNumber)?.intValue else {
                throw TextError("\(path): an added token lacks content or id")
            }
            for flag in ["lstrip", "rstrip", "single_word"] where a[flag] as? Bool == true {
                throw TextError("\(path): added token \(content) sets \(flag), which this tokenizer does not support")
            }
            if a["normalized"] as? Bool == true {
                throw TextError("\(path): added token \(content) is normalized; only raw-text added tokens are supported")
            }
            if vocabObj[content] == nil { vocab.append((content, id)) }
            specials.append(content)
        }
        return try BertTokenizer(vocabulary: vocab, specialTokens: specials, options: o, source: path)
    }
}
