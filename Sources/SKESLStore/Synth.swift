// A synthetic corpus with a planted multimodal sentiment signal, deterministic by seed:
// sample i depends only on (seed, i), so any range of it can be generated in any order.
//
// Per sample: a text latent t = 0.75 x the VADER score of the sentence's lexicon word
// (0 for a neutral sentence); audio and video latents a, v, each correlated 0.3 with
// t/2.4 and otherwise independent standard normals. Audio frames: x[f, d] = a * w_a[d]
// + N(0, 1), video likewise with v; w_a and w_v weight half of the dimensions (±0.5..1)
// and leave the rest pure noise. Label = clip(0.3 t + 0.9 a + 0.9 v + N(0, 0.1^2), -3, 3):
// text alone explains about a third of the label's variance (SynthTests measure it).
import Foundation
import SKESLKernels

public struct SynthConfig: Sendable {
    public var samples: Int
    public var spec: FeatureSpec
    public var seed: UInt64 = 0
    /// Fraction of sentences without a lexicon word.
    public var neutralFraction: Float = 0.15
    /// Train / valid / test fractions of labeled stores.
    public var splitFractions: (Float, Float, Float) = (0.7, 0.1, 0.2)
    /// Shortest true length, as a fraction of the padded frames.
    public var minLengthFraction: Float = 0.5
    public init(samples: Int, spec: FeatureSpec, seed: UInt64 = 0) {
        self.samples = samples; self.spec = spec; self.seed = seed
    }
}

/// Whole-word vocabulary lookup (BERT's vocab.txt, one token per line, id = line):
/// the synthetic corpus uses only whole-word tokens, so this equals WordPiece on it.
public struct WordVocabulary: Sendable {
    public let ids: [String: Int32]
    public let cls: Int32, sep: Int32, unk: Int32

    public init(path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StoreError("\(path): cannot read the vocabulary (one token per line, as BERT's vocab.txt)")
        }
        var m: [String: Int32] = [:]
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            m[String(line)] = Int32(i)
        }
        guard let c = m["[CLS]"], let s = m["[SEP]"], let u = m["[UNK]"] else {
            throw StoreError("\(path): no [CLS]/[SEP]/[UNK] tokens; is this a BERT vocab.txt?")
        }
        ids = m; cls = c; sep = s; unk = u
    }

    /// [CLS] words [SEP], zero padded / truncated to `length`; returns the true length.
    public func encode(_ text: String, length: Int, into out: UnsafeMutablePointer<Int32>) -> Int {
        out.update(repeating: 0, count: length)
        var n = 0
        func put(_ id: Int32) { if n < length { out[n] = id; n += 1 } }
        put(cls)
        for w in text.split(separator: " ") { if n < length - 1 { put(ids[String(w)] ?? unk) } }
        if n < length { put(sep) } else { out[length - 1] = sep }
        return n
    }
}

/// One synthetic sample's values, written into caller-owned buffers.
public struct SynthGenerator: Sendable {
    public let config: SynthConfig
    private let audioWeights: [Float]
    private let videoWeights: [Float]

    public init(_ config: SynthConfig) {
        self.config = config
        func weights(_ dim: Int, _ stream: String) -> [Float] {
            let r = KeyedRandom(seed: config.seed, stream: stream)
            return (0..<dim).map { d in
                guard d % 2 == 0 else { return 0 }        // odd dims: pure noise
                let mag = 0.5 + 0.5 * r.uniform(2 * d)
                return r.uniform(2 * d + 1) < 0.5 ? -mag : mag
            }
        }
        audioWeights = weights(config.spec.audioDim, "synth.audio.weights")
        videoWeights = weights(config.spec.videoDim, "synth.video.weights")
    }

    public struct Meta: Sendable {
        public var utteranceId: String
        public var transcript: String
        public var textLatent: Float
        public var audioLatent: Float
        public var videoLatent: Float
        public var audioLength: Int
        public var videoLength: Int
        public var label: Float
        public var split: Split
    }

    /// Draws sample `i`: fills `audio` (audioFrames*audioDim) and `video`, zero padded.
    public func sample(_ i: Int, audio: UnsafeMutablePointer<Float>, video: UnsafeMutablePointer<Float>) -> Meta {
        let c = config, s = c.spec
        let r = KeyedRandom(seed: c.seed, stream: "synth.sample", sample: UInt64(i))
        // Words 0..15 of r: choices and latents.
        let neutral = r.uniform(0) < c.neutralFraction
        var t: Float = 0
        let transcript: String
        if neutral {
            transcript = synthNeutralTemplates[r.integer(1, below: synthNeutralTemplates.count)]
        } else {
            let (w, score) = synthLexicon[r.integer(2, below: synthLexicon.count)]
            let tpl = synthSentimentTemplates[r.integer(3, below: synthSentimentTemplates.count)]
            transcript = tpl.split(separator: " ").map { $0 == "W" ? w : String($0) }.joined(separator: " ")
            t = 0.75 * score
        }
        var z = [Float](repeating: 0, count: 4)
        KeyedRandom(seed: c.seed, stream: "synth.latent", sample: UInt64(i)).fillNormal(&z, 4, mean: 0, std: 1)
        let rho: Float = 0.3, tn = t / 2.4
        let a = rho * tn + (1 - rho * rho).squareRoot() * z[0]
        let v = rho * tn + (1 - rho * rho).squareRoot() * z[1]
        let label = min(3, max(-3, 0.3 * t + 0.9 * a + 0.9 * v + 0.1 * z[2]))
        func length(_ frames: Int, _ u: Float) -> Int {
            let lo = max(1, Int((c.minLengthFraction * Float(frames)).rounded(.up)))
            return min(frames, lo + Int(u * Float(frames - lo + 1)))
        }
        let al = length(s.audioFrames, r.uniform(4)), vl = length(s.videoFrames, r.uniform(5))
        let u = r.uniform(6)
        let split: Split = u < c.splitFractions.0 ? .train : (u < c.splitFractions.0 + c.splitFractions.1 ? .valid : .test)
        fill(audio, frames: s.audioFrames, dim: s.audioDim, length: al, latent: a, weights: audioWeights,
             noise: KeyedRandom(seed: c.seed, stream: "synth.audio", sample: UInt64(i)))
        fill(video, frames: s.videoFrames, dim: s.videoDim, length: vl, latent: v, weights: videoWeights,
             noise: KeyedRandom(seed: c.seed, stream: "synth.video", sample: UInt64(i)))
        return Meta(utteranceId: "synth-\(c.seed)-\(i)", transcript: transcript, textLatent: t, audioLatent: a,
                    videoLatent: v, audioLength: al, videoLength: vl, label: (label * 1000).rounded() / 1000, split: split)
    }

    private func fill(_ out: UnsafeMutablePointer<Float>, frames: Int, dim: Int, length: Int, latent: Float,
                      weights: [Float], noise: KeyedRandom) {
        let n = length * dim
        noise.fillNormal(out, n, mean: 0, std: 1)
        weights.withUnsafeBufferPointer { w in
            for f in 0..<length {
                let row = out + f * dim
                for d in 0..<dim { row[d] += latent * w[d] }
            }
        }
        (out + n).update(repeating: 0, count: (frames - length) * dim)
    }
}

/// Writes a synthetic store of `config.samples` samples.
@discardableResult
public func writeSynthStore(directory: String, config: SynthConfig, samplesPerShard: Int,
                            layout: StoreLayout = .default, vocabulary: WordVocabulary? = nil,
                            overwrite: Bool = false, progress: ((Int) -> Void)? = nil) throws -> Manifest {
    let s = config.spec
    if s.tokens != nil && vocabulary == nil {
        throw StoreError("token ids need a vocabulary: pass --vocab <vocab.txt> (BERT uncased), or --tokens 0 for a store without token ids")
    }
    let w = try StoreWriter(directory: directory, name: "synth-\(config.seed)", spec: s, samplesPerShard: samplesPerShard,
                            layout: layout, labelRange: [-3, 3], overwrite: overwrite,
                            createdBy: "skesl synth --samples \(config.samples) --seed \(config.seed)")
    let gen = SynthGenerator(config)
    let audio = UnsafeMutablePointer<Float>.allocate(capacity: s.audioRow); defer { audio.deallocate() }
    let video = UnsafeMutablePointer<Float>.allocate(capacity: s.videoRow); defer { video.deallocate() }
    let L = s.tokens ?? 0
    let tokens = UnsafeMutablePointer<Int32>.allocate(capacity: max(L, 1)); defer { tokens.deallocate() }
    for i in 0..<config.samples {
        let m = gen.sample(i, audio: audio, video: video)
        var tl = 0
        if let v = vocabulary, L > 0 { tl = v.encode(m.transcript, length: L, into: tokens) }
        try w.append(utteranceId: m.utteranceId, transcript: m.transcript,
                     tokens: L > 0 ? UnsafeBufferPointer(start: tokens, count: L) : nil, tokenLength: tl,
                     audio: audio, audioLength: m.audioLength, video: video, videoLength: m.videoLength,
                     label: s.labeled ? m.label : nil, split: s.labeled ? m.split : nil)
        if let p = progress, (i + 1) % 100_000 == 0 { p(i + 1) }
    }
    return try w.finish()
}
