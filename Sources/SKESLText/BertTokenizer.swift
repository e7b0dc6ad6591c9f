// A tokenizer that gives the ids of Hugging Face's BertTokenizer (the `tokenizers`
// BertNormalizer + BertPreTokenizer + WordPiece pipeline): clean-up of control
// characters and whitespace, spaces around CJK ideographs, accent stripping (NFD,
// drop Mn) and lower-casing when asked, punctuation isolation, greedy longest-match
// WordPiece with a continuation prefix, over-long words to [UNK], special tokens
// matched whole in the raw text, then [CLS] … [SEP], truncation and padding.
// Text is handled as Unicode scalars in flat buffers; strings are built only for
// runs of non-ASCII text that need canonical decomposition.
import Foundation

public struct BertTokenizerOptions: Equatable, Sendable {
    public var lowercase = true
    /// nil: strip accents exactly when lower-casing (original BERT behaviour).
    public var stripAccents: Bool? = nil
    public var handleChineseChars = true
    public var cleanText = true
    public var maxInputCharsPerWord = 100
    public var continuingSubwordPrefix = "##"
    public var unkToken = "[UNK]"
    public init() {}
    public static let uncased = BertTokenizerOptions()
    public static var cased: BertTokenizerOptions { var o = BertTokenizerOptions(); o.lowercase = false; return o }
    var effectiveStripAccents: Bool { stripAccents ?? lowercase }
}

/// One encoded transcript, `maxLength` long.
public struct Encoding: Equatable, Sendable {
    public var inputIds: [Int32]
    public var tokenTypeIds: [Int32]
    public var attentionMask: [Int32]
}

public final class BertTokenizer: @unchecked Sendable {
    /// Token string of each id ("" for ids the vocabulary does not use).
    public let tokens: [String]
    public let options: BertTokenizerOptions
    public let unkId: Int32, clsId: Int32, sepId: Int32, padId: Int32
    public let maskId: Int32?
    /// Where the vocabulary came from, for messages.
    public let source: String

    private let lookupTable: ScalarTable             // whole tokens, for id(of:)
    private let words: FrozenScalarTable             // whole tokens
    private let continuations: FrozenScalarTable     // tokens after the continuation prefix, without it
    private let specials: [(scalars: [UInt32], id: Int32)]  // longest first
    private let specialFirst: Set<UInt32>
    private let specialFirstASCII: [Bool]            // fast check of the first scalar
    private let maxChars: Int

    public var vocabularySize: Int { tokens.count }

    /// - Parameters:
    ///   - vocabulary: (token, id) pairs; for a repeated token the last id wins.
    ///   - specialTokens: tokens matched whole in the raw text before normalisation
    ///     (Hugging Face's added tokens); they must be in the vocabulary.
    public init(vocabulary: [(String, Int)], specialTokens: [String], options: BertTokenizerOptions,
                source: String) throws {
        guard !vocabulary.isEmpty else { throw TextError("\(source): the vocabulary is empty") }
        let size = (vocabulary.map { $0.1 }.max() ?? 0) + 1
        guard vocabulary.allSatisfy({ $0.1 >= 0 }), size <= Int(Int32.max) else {
            throw TextError("\(source): token ids must lie in 0..<2^31")
        }
        var tokens = [String](repeating: "", count: size)
        var words = ScalarTable(capacity: vocabulary.count)
        var conts = ScalarTable(capacity: vocabulary.count / 4 + 16)
        let prefix = Array(options.continuingSubwordPrefix.unicodeScalars.map { $0.value })
        var byToken: [String: Int32] = [:]
        for (t, i) in vocabulary {
            tokens[i] = t
            byToken[t] = Int32(i)
            let s = Array(t.unicodeScalars.map { $0.value })
            words.insert(s, value: Int32(i))
            if !prefix.isEmpty, s.count >= prefix.count, Array(s[0..<prefix.count]) == prefix {
                conts.insert(s[prefix.count...], value: Int32(i))
            }
        }
        func need(_ t: String) throws -> Int32 {
            guard let i = byToken[t] else {
                throw TextError("\(source): the vocabulary has no \(t) token; a BERT vocabulary needs [UNK], [CLS], [SEP] and [PAD]")
            }
            return i
        }
        unkId = try need(options.unkToken)
        clsId = try need("[CLS]"); sepId = try need("[SEP]"); padId = try need("[PAD]")
        maskId = byToken["[MASK]"]
        var sp: [(scalars: [UInt32], id: Int32)] = []
        for t in specialTokens where !t.isEmpty {
            guard let i = byToken[t] else { throw TextError("\(source): special token \(t) is not in the vocabulary") }
            sp.append((Array(t.unicodeScalars.map { $0.value }), i))
        }
        sp.sort { $0.scalars.count > $1.scalars.count }
        specials = sp
        specialFirst = Set(sp.map { $0.scalars[0] })
        specialFirstASCII = (0..<128).map { sp.map { $0.scalars[0] }.contains(UInt32($0)) }
        maxChars = options.maxInputCharsPerWord
        self.tokens = tokens
        self.lookupTable = words
        self.words = FrozenScalarTable(words)
        self.continuations = FrozenScalarTable(conts)
        self.options = options
        self.source = source
    }

    public func id(of token: String) -> Int32? { lookupTable.lookup(token) }

    // MARK: encoding

    /// WordPiece ids of `text`: no [CLS]/[SEP], no truncation.
    public func wordPieceIds(_ text: String) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        appendWordPieceIds(text, to: &out)
        return out
    }

    /// `[CLS] ids [SEP]`, truncated to `maxLength` (the end of the text is dropped) and
    /// padded with [PAD]; token types 0; attention mask 1 on real tokens.
    public func encode(_ text: String, maxLength: Int) -> Encoding {
        encode(ids: wordPieceIds(text), maxLength: maxLength)
    }

    public func encode(ids: [Int32], maxLength: Int) -> Encoding {
        precondition(maxLength >= 2, "maxLength must leave room for [CLS] and [SEP]")
        let n = min(ids.count, maxLength - 2)
        var input = [Int32](repeating: padId, count: maxLength)
        var att = [Int32](repeating: 0, count: maxLength)
        input[0] = clsId
        for i in 0..<n { input[i + 1] = ids[i] }
        input[n + 1] = sepId
        for i in 0..<(n + 2) { att[i] = 1 }
        return Encoding(inputIds: input, tokenTypeIds: [Int32](repeating: 0, count: maxLength), attentionMask: att)
    }

    public func appendWordPieceIds(_ text: String, to out: inout [Int32]) {
        var raw: [UInt32] = []
        raw.reserveCapacity(text.utf8.count)
        for s in text.unicodeScalars { raw.append(s.value) }
        var work = Workspace(maxKey: max(words.maxKeyLength, continuations.maxKeyLength))
        raw.withUnsafeBufferPointer { r in
            var segStart = 0, i = 0
            let n = r.count
            while i < n {
                let c = r[i]
                if (c < 128 ? specialFirstASCII[Int(c)] : specialFirst.contains(c)), let (len, id) = matchSpecial(r, at: i) {
                    segment(r, segStart, i, &work, &out)
                    out.append(id)
                    i += len
                    segStart = i
                } else {
                    i += 1
                }
            }
            segment(r, segStart, n, &work, &out)
        }
    }

    private func matchSpecial(_ r: UnsafeBufferPointer<UInt32>, at i: Int) -> (Int, Int32)? {
        for s in specials where s.scalars[0] == r[i] && i + s.scalars.count <= r.count {
            var same = true
            for j in 1..<s.scalars.count where r[i + j] != s.scalars[j] { same = false; break }
            if same { return (s.scalars.count, s.id) }
        }
        return nil
    }

    private struct Workspace {
        var norm: [UInt32] = []
        var run: [UInt32] = []
        var hashes: [UInt64]
        init(maxKey: Int) { hashes = [UInt64](repeating: 0, count: maxKey + 1) }
    }

    private func segment(_ r: UnsafeBufferPointer<UInt32>, _ a: Int, _ b: Int, _ w: inout Workspace, _ out: inout [Int32]) {
        guard a < b else { return }
        w.norm.removeAll(keepingCapacity: true)
        normalise(r, a, b, &w)
        let norm = w.norm
        norm.withUnsafeBufferPointer { p in
            w.hashes.withUnsafeMutableBufferPointer { h in
                var start = -1
                for i in 0..<p.count {
                    let c = p[i]
                    if isWhitespace(c) {
                        if start >= 0 { wordPiece(p.baseAddress! + start, i - start, h, &out); start = -1 }
                    } else if isPunctuation(c) {
                        if start >= 0 { wordPiece(p.baseAddress! + start, i - start, h, &out); start = -1 }
                        wordPiece(p.baseAddress! + i, 1, h, &out)
                    } else if start < 0 {
                        start = i
                    }
                }
                if start >= 0 { wordPiece(p.baseAddress! + start, p.count - start, h, &out) }
            }
        }
    }

    // MARK: normalisation (BertNormalizer order: clean, CJK, strip accents, lower-case)

    private func normalise(_ r: UnsafeBufferPointer<UInt32>, _ a: Int, _ b: Int, _ w: inout Workspace) {
        let lower = options.lowercase, strip = options.effectiveStripAccents
        let clean = options.cleanText, cjk = options.handleChineseChars
        for i in a..<b {
            var c = r[i]
            if c < 0x80 {
                if strip && !w.run.isEmpty { flushRun(&w) }
                if clean {
                    if c == 9 || c == 10 || c == 13 { c = 0x20 }
                    else if c < 0x20 || c == 0x7F { continue }
                }
                if lower && c >= 0x41 && c <= 0x5A { c += 32 }
                w.norm.append(c)
                continue
            }
            let s = Unicode.Scalar(c)!
            if clean {
                if c == 0xFFFD || isControl(s) { continue }
                if s.properties.isWhitespace { if strip { flushRun(&w) }; w.norm.append(0x20); continue }
            }
            if cjk && isChineseChar(c) {
                if strip { flushRun(&w) }
                w.norm.append(0x20); w.norm.append(c); w.norm.append(0x20)
                continue
            }
            if strip { w.run.append(c); continue }
            appendLowered(s, lower, &w.norm)
        }
        if strip && !w.run.isEmpty { flushRun(&w) }
    }

    /// Canonical decomposition of a run of non-ASCII scalars, non-spacing marks dropped.
    private func flushRun(_ w: inout Workspace) {
        guard !w.run.isEmpty else { return }
        var s = String.UnicodeScalarView()
        for c in w.run { s.append(Unicode.Scalar(c)!) }
        w.run.removeAll(keepingCapacity: true)
        let d = String(s).decomposedStringWithCanonicalMapping
        for u in d.unicodeScalars where u.properties.generalCategory != .nonspacingMark {
            appendLowered(u, options.lowercase, &w.norm)
        }
    }

    @inline(__always)
    private func appendLowered(_ s: Unicode.Scalar, _ lower: Bool, _ out: inout [UInt32]) {
        if lower && s.value >= 0x80 && s.properties.changesWhenLowercased {
            for u in s.properties.lowercaseMapping.unicodeScalars { out.append(u.value) }
        } else if lower && s.value >= 0x41 && s.value <= 0x5A {
            out.append(s.value + 32)
        } else {
            out.append(s.value)
        }
    }

    // MARK: WordPiece

    private func wordPiece(_ p: UnsafePointer<UInt32>, _ n: Int, _ h: UnsafeMutableBufferPointer<UInt64>,
                           _ out: inout [Int32]) {
        if n > maxChars { out.append(unkId); return }
        let mark = out.count
        var start = 0
        while start < n {
            let table = start == 0 ? words : continuations
            let longest = min(n - start, table.maxKeyLength)
            var hv = ScalarTable.hashSeed
            h[0] = hv
            var k = 0
            while k < longest { hv = ScalarTable.step(hv, p[start + k]); k += 1; h[k] = hv }
            var len = longest
            var found: Int32 = -1
            while len > 0 {
                found = table.lookup(p + start, len, hash: ScalarTable.finish(h[len]))
                if found >= 0 { break }
                len -= 1
            }
            if found < 0 {
                out.removeSubrange(mark..<out.count)
                out.append(unkId)
                return
            }
            out.append(found)
            start += len
        }
    }
}

// MARK: character classes, as BERT defines them

@inline(__always)
func isControl(_ s: Unicode.Scalar) -> Bool {
    switch s.value { case 9, 10, 13: return false; default: break }
    switch s.properties.generalCategory {
    // Unassigned code points (Cn) are not control characters for Hugging Face's
    // tokenizers (its category tables list assigned characters only): they stay.
    case .control, .format, .surrogate, .privateUse: return true
    default: return false
    }
}

@inline(__always)
func isWhitespace(_ c: UInt32) -> Bool {
    if c < 0x80 { return c == 0x20 || (c >= 9 && c <= 13) }
    return Unicode.Scalar(c)!.properties.isWhitespace
}

@inline(__always)
func isPunctuation(_ c: UInt32) -> Bool {
    if c < 0x80 {
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)
    }
    switch Unicode.Scalar(c)!.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
         .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
    default: return false
    }
}

@inline(__always)
func isChineseChar(_ c: UInt32) -> Bool {
    (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF)
        || (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF)
        || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F)
}
