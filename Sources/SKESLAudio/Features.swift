// The reference's audio features per utterance (SKESL's get_audio_embedding.py with
// librosa 0.9.1): y = librosa.load(path) (mono, 22,050 Hz, resampy kaiser_best), then per
// frame of hop 512: [zero_crossing_rate (1), mfcc htk=True (20), chroma_cqt (12)] = 33.
// One `AudioFeatureExtractor` per thread: it owns FFT plans and caches filter banks.
import Foundation

public enum FeatureError: Error, CustomStringConvertible, Equatable {
    case unreadable(String)
    case empty(String)
    case silent(String)
    case nonFinite(String)
    case tooShort(String)
    case unsupported(String)

    /// The short reason listed in extraction reports.
    public var kind: String {
        switch self {
        case .unreadable: return "unreadable"
        case .empty: return "empty"
        case .silent: return "silent"
        case .nonFinite: return "non-finite"
        case .tooShort: return "too-short"
        case .unsupported: return "unsupported"
        }
    }
    public var description: String {
        switch self {
        case let .unreadable(s), let .empty(s), let .silent(s), let .nonFinite(s), let .tooShort(s), let .unsupported(s): return s
        }
    }
}

public struct AudioFeatures: Sendable {
    /// frames x 33, float32: ZCR, 20 MFCC, 12 chroma.
    public var values: [Float]
    public var frames: Int
    public static let dim = 33
    public var tuning: Double
}

public final class AudioFeatureExtractor {
    public static let targetRate = 22050.0
    public static let hop = 512
    public static let nFFT = 2048

    private let stft = STFT(nFFT: AudioFeatureExtractor.nFFT, window: periodicHann(AudioFeatureExtractor.nFFT))
    private let mfcc = MFCC(sr: AudioFeatureExtractor.targetRate, nFFT: AudioFeatureExtractor.nFFT)
    private let cqt = ConstantQ()
    private var resamplers: [Double: Resampler] = [:]

    public init() {}

    /// librosa.load(path): decode, mix to mono, resample to 22,050 Hz with kaiser_best.
    public func load(_ path: String) throws -> [Float] {
        let a = try decodeAudioFile(path)
        return try resampleToTarget(a.samples, rate: a.sampleRate, name: path)
    }

    public func resampleToTarget(_ x: [Float], rate: Double, name: String) throws -> [Float] {
        guard !x.isEmpty else { throw FeatureError.empty("\(name): no audio samples") }
        if rate == AudioFeatureExtractor.targetRate { return x }
        let r: Resampler
        if let c = resamplers[rate] { r = c } else {
            r = Resampler(from: rate, to: AudioFeatureExtractor.targetRate, filter: .kaiserBest); resamplers[rate] = r
        }
        do { return try r.librosa(x) } catch {
            throw FeatureError.tooShort("\(name): \(x.count) samples at \(rate) Hz are too few to resample to 22,050 Hz")
        }
    }

    /// The 33 features per frame of a signal at 22,050 Hz, after the checks that make a clip
    /// unusable (empty, non-finite, all zeros, too short).
    public func features(_ y: [Float], name: String) throws -> AudioFeatures {
        guard !y.isEmpty else { throw FeatureError.empty("\(name): no audio samples") }
        if let i = y.firstIndex(where: { !$0.isFinite }) {
            throw FeatureError.nonFinite("\(name): sample \(i) is \(y[i]); librosa refuses non-finite audio")
        }
        guard y.contains(where: { $0 != 0 }) else { throw FeatureError.silent("\(name): every sample is zero (silence)") }
        let sr = AudioFeatureExtractor.targetRate, hop = AudioFeatureExtractor.hop
        let spec = y.withUnsafeBufferPointer { stft($0, hop: hop) }
        let zcr = y.withUnsafeBufferPointer { zeroCrossingRate($0, hop: hop) }
        let m = mfcc(spec)
        let tuning = estimateTuning(spec, sr: sr, nFFT: AudioFeatureExtractor.nFFT, binsPerOctave: cqt.binsPerOctave)
        let (C, cframes): ([Float], Int)
        do { (C, cframes) = try cqt.magnitude(y, sr: sr, hop: hop, tuning: tuning) } catch let e as FeatureError {
            throw FeatureError.tooShort("\(name): \(e)")
        }
        let chroma = cqt.chroma(C, frames: cframes)
        let T = spec.frames
        guard zcr.count == T, cframes == T else {
            throw FeatureError.unsupported("\(name): frame counts differ (zcr \(zcr.count), mfcc \(T), chroma \(cframes)); the reference's concatenation would fail")
        }
        var out = [Float](repeating: 0, count: T * AudioFeatures.dim)
        for t in 0..<T {
            let o = t * AudioFeatures.dim
            out[o] = zcr[t]
            for k in 0..<20 { out[o + 1 + k] = m[t * 20 + k] }
            for c in 0..<12 { out[o + 21 + c] = chroma[t * 12 + c] }
        }
        return AudioFeatures(values: out, frames: T, tuning: tuning)
    }

    /// load + features.
    public func extract(_ path: String) throws -> AudioFeatures {
        try features(try load(path), name: path)
    }
}
