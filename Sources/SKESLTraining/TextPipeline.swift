// From a store batch to the model's inputs: the transcript is tokenized; in
// pretraining its most sentiment-laden word is masked (keyed by seed, epoch and the
// sample's global id, so any rank and any resume masks it the same way) and the target
// is its lexicon intensity; in fine-tuning the target is the label.
import Foundation
import SKESLReporting
import SKESLModel
import SKESLStore
import SKESLText

/// Text rows and targets of one micro-batch (the features stay in the store batch).
public final class TextBatch {
    public let capacity: Int, length: Int
    public let ids, types, mask, maskPos: UnsafeMutablePointer<Int32>
    public let targets: UnsafeMutablePointer<Float>
    public let sampleIds: UnsafeMutablePointer<Int64>
    public private(set) var count = 0

    public init(capacity: Int, length: Int) {
        self.capacity = max(capacity, 1); self.length = length
        let n = self.capacity
        ids = .allocate(capacity: n * length); types = .allocate(capacity: n * length); mask = .allocate(capacity: n * length)
        maskPos = .allocate(capacity: n); targets = .allocate(capacity: n); sampleIds = .allocate(capacity: n)
        ids.initialize(repeating: 0, count: n * length); types.initialize(repeating: 0, count: n * length)
        mask.initialize(repeating: 0, count: n * length); maskPos.initialize(repeating: 0, count: n)
        targets.initialize(repeating: 0, count: n); sampleIds.initialize(repeating: 0, count: n)
    }
    deinit { ids.deallocate(); types.deallocate(); mask.deallocate(); maskPos.deallocate(); targets.deallocate(); sampleIds.deallocate() }

    public func setCount(_ n: Int) { count = n }
}

public final class TextPipeline {
    public let tokenizer: BertTokenizer
    public let masker: SentimentMasker?
    public let lexicon: VaderLexicon?
    public let length: Int

    public init(tokenizer: BertTokenizer, lexicon: VaderLexicon?, length: Int, windowAttendsPadding: Bool = false) throws {
        self.tokenizer = tokenizer
        self.length = length
        self.lexicon = lexicon
        masker = try lexicon.map { try SentimentMasker(tokenizer: tokenizer, lexicon: $0, maxLength: length,
                                                       windowAttendsPadding: windowAttendsPadding) }
    }

    /// Fills `t` for the samples of `b`. Pretraining (a masker) sets mask positions and
    /// SWM targets; otherwise the targets are the store's labels.
    public func fill(_ t: TextBatch, from b: StoreBatch, seed: UInt64, epoch: Int) throws {
        precondition(b.count <= t.capacity)
        let L = length
        for i in 0..<b.count {
            let gid = b.globalIds[i]
            t.sampleIds[i] = gid
            let row = t.ids + i * L, types = t.types + i * L, att = t.mask + i * L
            let pieces = tokenizer.wordPieceIds(b.transcripts[i])
            if let m = masker {
                let r = pieces.withUnsafeBufferPointer {
                    m.mask(ids: $0, seed: seed, epoch: UInt64(epoch), sample: UInt64(bitPattern: gid),
                           inputIds: row, tokenTypeIds: types, attentionMask: att)
                }
                t.maskPos[i] = Int32(r.maskPosition)
                t.targets[i] = r.target
            } else {
                let e = tokenizer.encode(ids: pieces, maxLength: L)
                row.update(from: e.inputIds, count: L); types.update(from: e.tokenTypeIds, count: L)
                att.update(from: e.attentionMask, count: L)
                t.maskPos[i] = 0
                guard let labels = b.labels else {
                    throw ConfigError("the store has no labels: fine-tuning and evaluation need a labeled store (MOSI/MOSEI or skesl synth --labeled)")
                }
                t.targets[i] = labels[i]
            }
        }
        t.setCount(b.count)
    }

    /// Pretraining from the frozen-BERT cache: rows [B, H], mask positions and targets come
    /// from the cache; the ids are not needed (padding).
    public func fillFromCache(_ t: TextBatch, rows: UnsafeMutablePointer<Float>, from b: StoreBatch,
                              cache: BertCache.Reader, seed: UInt64, epoch: Int) throws {
        guard let m = masker else { throw ConfigError("the BERT cache is for pretraining") }
        let L = length
        for i in 0..<b.count { t.sampleIds[i] = b.globalIds[i] }
        (t.ids).update(repeating: 0, count: b.count * L)
        (t.types).update(repeating: 0, count: b.count * L)
        (t.mask).update(repeating: 0, count: b.count * L)
        try cache.fill(rows: rows, maskPositions: t.maskPos, targets: t.targets, ids: b.globalIds, count: b.count,
                       masker: m, seed: seed, epoch: epoch)
        t.setCount(b.count)
    }

    /// The model's view of a micro-batch.
    public static func batch(_ t: TextBatch, _ b: StoreBatch) -> Batch {
        Batch(size: b.count, textLength: t.length, audioFrames: b.spec.audioFrames, videoFrames: b.spec.videoFrames,
              inputIds: t.ids, tokenTypeIds: t.types, attentionMask: t.mask,
              audio: UnsafePointer(b.audio.baseAddress!), video: UnsafePointer(b.video.baseAddress!),
              audioLengths: UnsafePointer(b.audioLengths.baseAddress!), videoLengths: UnsafePointer(b.videoLengths.baseAddress!),
              maskPositions: t.maskPos, targets: t.targets, sampleIds: t.sampleIds)
    }
}
