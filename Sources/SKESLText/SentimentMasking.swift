// Sentiment word masking (method section 1), on WordPiece ids.
//
// For the WordPiece ids t[0..<n] of a transcript (no [CLS]/[SEP]) and w = maxLength - 2:
// - candidates are the positions whose token is a VADER key; the first position with the
//   largest |score| wins; every occurrence of that token id becomes [MASK]; the target is
//   round(0.75 × score, 3);
// - with no candidate, one position drawn uniformly from 0..<min(n, w) by the keyed
//   generator (seed, stream "swm", sample id, epoch) becomes [MASK]; the target is 0.0;
//   an empty transcript becomes the single token [MASK];
// - when the first mask i lies past the tokens that fit (i >= w), the tokens kept are
//   [i - 20, i + 19) (the reference's window), then truncated to w as any sequence.
// The output is [CLS] … [SEP], padded; the mask position counts [CLS] as 0.
// Unlike the reference we do not re-tokenise the masked text (which can re-split the
// neighbours of the masked word): the ids are masked in place.
// `windowAttendsPadding` reproduces a reference quirk: its windowed samples keep the
// attention mask of the whole (unmasked) text, all ones, so BERT also attends to the
// window's [PAD] positions. Off by default: padding is masked (docs/text.md).
import SKESLKernels

public struct MaskedSample: Equatable, Sendable {
    public var encoding: Encoding
    /// Index of the first [MASK] in `encoding.inputIds` ([CLS] is 0).
    public var maskPosition: Int
    public var target: Float
    /// The token that was masked, nil when the position was drawn at random.
    public var maskedToken: Int32?
}

public final class SentimentMasker: @unchecked Sendable {
    public let tokenizer: BertTokenizer
    public let maxLength: Int
    /// Tokens kept before the first mask when it lies past the window (20 in the reference).
    public let windowBefore: Int
    public let maskId: Int32
    /// Windowed samples get an attention mask of all ones, as the reference gives them.
    public let windowAttendsPadding: Bool
    /// Per token id: round(0.75 × score, 3), NaN when the token is not a lexicon key.
    private let targets: [Double]
    private let absScores: [Double]

    public init(tokenizer: BertTokenizer, lexicon: VaderLexicon, maxLength: Int = 39, windowBefore: Int = 20,
                windowAttendsPadding: Bool = false) throws {
        guard let m = tokenizer.maskId else {
            throw TextError("\(tokenizer.source): the vocabulary has no [MASK] token, which sentiment word masking needs")
        }
        guard maxLength >= 3 else { throw TextError("max length \(maxLength) leaves no room for a masked token (need at least 3)") }
        self.tokenizer = tokenizer
        self.maxLength = maxLength
        self.windowBefore = min(windowBefore, maxLength - 3)
        self.maskId = m
        self.windowAttendsPadding = windowAttendsPadding
        var t = [Double](repeating: .nan, count: tokenizer.vocabularySize)
        var a = [Double](repeating: -1, count: tokenizer.vocabularySize)
        var cache: [Double: Double] = [:]
        for (i, tok) in tokenizer.tokens.enumerated() where !tok.isEmpty {
            if let s = lexicon.scores[tok] {
                if cache[s] == nil { cache[s] = VaderLexicon.target(score: s) }
                t[i] = cache[s]!
                a[i] = abs(s)
            }
        }
        targets = t
        absScores = a
    }

    /// Number of vocabulary tokens that are lexicon keys.
    public var lexiconTokenCount: Int { absScores.filter { $0 >= 0 }.count }

    public func mask(text: String, seed: UInt64, epoch: UInt64, sample: UInt64) -> MaskedSample {
        mask(ids: tokenizer.wordPieceIds(text), seed: seed, epoch: epoch, sample: sample)
    }

    public func mask(ids: [Int32], seed: UInt64, epoch: UInt64, sample: UInt64) -> MaskedSample {
        var input = [Int32](repeating: 0, count: maxLength)
        var types = [Int32](repeating: 0, count: maxLength)
        var att = [Int32](repeating: 0, count: maxLength)
        let r = ids.withUnsafeBufferPointer { p in
            mask(ids: p, seed: seed, epoch: epoch, sample: sample,
                 inputIds: &input, tokenTypeIds: &types, attentionMask: &att)
        }
        return MaskedSample(encoding: Encoding(inputIds: input, tokenTypeIds: types, attentionMask: att),
                            maskPosition: r.maskPosition, target: r.target, maskedToken: r.maskedToken)
    }

    /// Writes one sample's `maxLength` ids, token types and attention mask into the
    /// caller's buffers (a batch row) without allocating.
    /// `randomChoice`: for a transcript without a lexicon word, use this candidate index
    /// instead of drawing one (the frozen-BERT cache encodes every candidate once).
    public func mask(ids: UnsafeBufferPointer<Int32>, seed: UInt64, epoch: UInt64, sample: UInt64,
                     inputIds: UnsafeMutablePointer<Int32>, tokenTypeIds: UnsafeMutablePointer<Int32>,
                     attentionMask: UnsafeMutablePointer<Int32>, randomChoice: Int? = nil) -> (maskPosition: Int, target: Float, maskedToken: Int32?) {
        let n = ids.count, w = maxLength - 2
        let best = strongestPosition(ids)
        var first: Int
        var target = 0.0
        var chosen: Int32? = nil
        if best >= 0 {
            first = best
            chosen = ids[best]
            target = targets[Int(ids[best])]
        } else if n == 0 {
            first = 0
        } else {
            first = randomChoice ?? randomIndex(candidates: min(n, w), seed: seed, epoch: epoch, sample: sample)
        }
        // Window [start, end) of the (masked) tokens that the sequence keeps.
        var start = 0
        if first >= w { start = first - windowBefore }
        let end = n == 0 ? 1 : min(n, start + w)
        inputIds[0] = tokenizer.clsId
        var k = 1
        for j in start..<end {
            let id = n == 0 ? maskId : ids[j]
            inputIds[k] = (chosen != nil && id == chosen!) || (chosen == nil && j == first) ? maskId : id
            k += 1
        }
        inputIds[k] = tokenizer.sepId
        k += 1
        // The reference's window keeps the unmasked text's mask, which is all ones there
        // (a mask past position w - 1 means the text had more than w tokens).
        let attended = windowAttendsPadding && start > 0 ? maxLength : k
        for j in 0..<maxLength {
            attentionMask[j] = j < attended ? 1 : 0
            tokenTypeIds[j] = 0
            if j >= k { inputIds[j] = tokenizer.padId }
        }
        return (first - start + 1, Float(target), chosen)
    }

    /// Identifies the lexicon as applied to this vocabulary, and the window's mask rule
    /// (for caches keyed on them).
    public var lexiconFingerprint: UInt64 {
        var h: UInt64 = windowAttendsPadding ? 0x5EED_0F_A77E_2D : 0xCBF2_9CE4_8422_2325
        for (i, a) in absScores.enumerated() where a >= 0 {
            h = (h ^ UInt64(i)) &* 0x100_0000_01B3
            h = (h ^ UInt64(bitPattern: Int64(targets[i] * 1000))) &* 0x100_0000_01B3
        }
        return h
    }

    /// Index of the lexicon token with the largest |score| (first on ties), or -1.
    func strongestPosition(_ ids: UnsafeBufferPointer<Int32>) -> Int {
        var best = -1
        var bestAbs = -1.0
        for j in 0..<ids.count {
            let id = Int(ids[j])
            if id >= 0 && id < absScores.count && absScores[id] > bestAbs { bestAbs = absScores[id]; best = j }
        }
        return best
    }

    /// How many positions a transcript's mask may take: 1 when it is fixed (a lexicon word,
    /// or an empty transcript), else the random candidates min(n, maxLength - 2).
    public func candidateCount(ids: UnsafeBufferPointer<Int32>) -> Int {
        if ids.isEmpty || strongestPosition(ids) >= 0 { return 1 }
        return min(ids.count, maxLength - 2)
    }

    /// The random candidate drawn for (seed, epoch, sample) among `candidates` positions.
    public func randomIndex(candidates: Int, seed: UInt64, epoch: UInt64, sample: UInt64) -> Int {
        KeyedRandom(seed: seed, stream: "swm", sample: sample, epoch: epoch).integer(0, below: candidates)
    }
}
