// A reusable batch: fixed-capacity contiguous buffers allocated once, refilled by the
// loader. Rows [0, count) are valid; rows past `count` hold stale values.

public final class StoreBatch: @unchecked Sendable {
    public let capacity: Int
    public let spec: FeatureSpec
    /// Spare floats after the audio and video buffers (see init).
    static let featurePadding = 16
    public private(set) var count = 0

    /// Global sample ids (shard base offset + row), unique across the store.
    public var globalIds: [Int64]
    public var utteranceIds: [String]
    public var transcripts: [String]
    /// [capacity, L] token ids and true lengths, when the store has tokens.
    public let tokens: UnsafeMutableBufferPointer<Int32>?
    public let tokenLengths: UnsafeMutableBufferPointer<Int32>?
    /// [capacity, Ta, Da] and [capacity, Tv, Dv] float32, zero padded past the true lengths.
    public let audio: UnsafeMutableBufferPointer<Float>
    public let audioLengths: UnsafeMutableBufferPointer<Int32>
    public let video: UnsafeMutableBufferPointer<Float>
    public let videoLengths: UnsafeMutableBufferPointer<Int32>
    /// Labels and split codes, when the store is labeled.
    public let labels: UnsafeMutableBufferPointer<Float>?
    public let splits: UnsafeMutableBufferPointer<UInt8>?

    /// Where this batch sits: epoch, step in the epoch, micro-batch in the step.
    public internal(set) var epoch = 0
    public internal(set) var step = 0
    public internal(set) var micro = 0
    public internal(set) var microBatches = 1
    /// Global positions of the epoch order this batch came from (this rank's part).
    public internal(set) var positions: Range<Int> = 0..<0
    /// Samples of the whole global step (all ranks), for weighting a gradient average.
    public internal(set) var globalStepSamples = 0
    /// Resume point once this step is done (meaningful on the last micro-batch).
    public internal(set) var cursorAfterStep = LoaderCursor(epoch: 0, position: 0)
    /// Bad samples skipped while filling this batch (with skipBadSamples).
    public internal(set) var skipped = 0

    public init(capacity: Int, spec: FeatureSpec) {
        self.capacity = capacity; self.spec = spec
        globalIds = [Int64](repeating: -1, count: capacity)
        utteranceIds = [String](repeating: "", count: capacity)
        transcripts = [String](repeating: "", count: capacity)
        /// n zeroed values, followed by `spare` more that the buffer does not count.
        func buf<T>(_ n: Int, _ zero: T, spare: Int = 0) -> UnsafeMutableBufferPointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(n + spare, 1))
            p.initialize(repeating: zero, count: max(n + spare, 1))
            return UnsafeMutableBufferPointer(start: p, count: max(n, 1))
        }
        tokens = spec.tokens.map { buf(capacity * $0, Int32(0)) }
        tokenLengths = spec.tokens.map { _ in buf(capacity, Int32(0)) }
        // Feature buffers end with `featurePadding` spare floats: a raw chunk (row plus
        // checksum) can then be read in place into the last slot too.
        audio = buf(capacity * spec.audioRow, Float(0), spare: StoreBatch.featurePadding)
        audioLengths = buf(capacity, Int32(0))
        video = buf(capacity * spec.videoRow, Float(0), spare: StoreBatch.featurePadding)
        videoLengths = buf(capacity, Int32(0))
        labels = spec.labeled ? buf(capacity, Float(0)) : nil
        splits = spec.labeled ? buf(capacity, UInt8(0)) : nil
    }

    deinit {
        tokens?.deallocate(); tokenLengths?.deallocate()
        audio.deallocate(); audioLengths.deallocate(); video.deallocate(); videoLengths.deallocate()
        labels?.deallocate(); splits?.deallocate()
    }

    /// Bytes held by the big buffers.
    public var bytes: Int { capacity * (4 * (spec.audioRow + spec.videoRow + (spec.tokens ?? 0)) + 24) }

    public func audioRow(_ i: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: audio[(i * spec.audioRow)..<((i + 1) * spec.audioRow)])
    }
    public func videoRow(_ i: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(rebasing: video[(i * spec.videoRow)..<((i + 1) * spec.videoRow)])
    }

    func reset() { count = 0; skipped = 0 }
    func setCount(_ n: Int) { count = n }

    /// Moves row `from` to row `to` (to < from): closes the gap a skipped sample leaves.
    func move(from: Int, to: Int) {
        globalIds[to] = globalIds[from]
        utteranceIds[to] = utteranceIds[from]
        transcripts[to] = transcripts[from]
        (audio.baseAddress! + to * spec.audioRow).update(from: audio.baseAddress! + from * spec.audioRow, count: spec.audioRow)
        (video.baseAddress! + to * spec.videoRow).update(from: video.baseAddress! + from * spec.videoRow, count: spec.videoRow)
        audioLengths[to] = audioLengths[from]; videoLengths[to] = videoLengths[from]
        if let t = tokens, let tl = tokenLengths, let L = spec.tokens {
            (t.baseAddress! + to * L).update(from: t.baseAddress! + from * L, count: L)
            tl[to] = tl[from]
        }
        if let l = labels, let s = splits { l[to] = l[from]; s[to] = s[from] }
    }

    /// Why row `j` is not a usable sample, or nil.
    /// `featuresFinite`: the reader already saw every audio and video value finite.
    func check(slot j: Int, labelRange: [Float]?, text: Bool = true, featuresFinite: Bool = false) -> String? {
        let s = spec
        if text && transcripts[j].allSatisfy({ $0.isWhitespace }) { return "empty transcript" }
        let al = Int(audioLengths[j]), vl = Int(videoLengths[j])
        if al < 0 || al > s.audioFrames { return "audio_length \(al) outside 0...\(s.audioFrames)" }
        if vl < 0 || vl > s.videoFrames { return "video_length \(vl) outside 0...\(s.videoFrames)" }
        if !featuresFinite, let k = firstNonFinite(audio.baseAddress! + j * s.audioRow, s.audioRow) {
            return "audio holds \(audio[j * s.audioRow + k]) at frame \(k / s.audioDim), dim \(k % s.audioDim)"
        }
        if !featuresFinite, let k = firstNonFinite(video.baseAddress! + j * s.videoRow, s.videoRow) {
            return "video holds \(video[j * s.videoRow + k]) at frame \(k / s.videoDim), dim \(k % s.videoDim)"
        }
        if let t = tokens, let tl = tokenLengths, let L = s.tokens {
            let n = Int(tl[j])
            if n < 0 || n > L { return "token_length \(n) outside 0...\(L)" }
            for p in 0..<L where t[j * L + p] < 0 { return "token id \(t[j * L + p]) at position \(p) is negative" }
        }
        if let l = labels, let sp = splits {
            let v = l[j]
            if !v.isFinite { return "label is \(v)" }
            if let r = labelRange, v < r[0] || v > r[1] { return "label \(v) outside [\(r[0]), \(r[1])]" }
            if sp[j] > 2 { return "split code \(sp[j]) is not 0 (train), 1 (valid) or 2 (test)" }
        }
        return nil
    }
}

/// Index of the first NaN or infinity, testing the exponent bits (no branches per value
/// until one is found).
@inline(__always)
func firstNonFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Int? {
    let bits = UnsafeRawPointer(p).assumingMemoryBound(to: UInt32.self)
    var any: UInt32 = 0
    var i = 0
    while i < n {
        let e = bits[i] & 0x7F80_0000
        any |= (e == 0x7F80_0000) ? 1 : 0
        i += 1
    }
    if any == 0 { return nil }
    for k in 0..<n where !p[k].isFinite { return k }
    return nil
}
