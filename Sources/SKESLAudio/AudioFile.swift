// Decoding audio files: WAV, FLAC, Ogg and the other formats libsndfile reads, as float32
// in [-1, 1] (libsndfile's normalisation, which Python's soundfile also uses), mixed to
// mono as numpy's mean does (float32 sum over channels in order, divided by their count).
import CSndfile
import Foundation

public struct DecodedAudio: Sendable {
    public var samples: [Float]
    public var sampleRate: Double
    public var channels: Int
}

public func decodeAudioFile(_ path: String) throws -> DecodedAudio {
    var info = SF_INFO()
    guard let f = sf_open(path, Int32(SFM_READ), &info) else {
        let why = String(cString: sf_strerror(nil))
        throw FeatureError.unreadable("\(path): \(why)")
    }
    defer { sf_close(f) }
    let channels = Int(info.channels), frames = Int(info.frames)
    guard channels >= 1, info.samplerate > 0 else { throw FeatureError.unreadable("\(path): no channels or no sample rate in its header") }
    var interleaved = [Float](repeating: 0, count: max(frames, 0) * channels)
    var got = 0
    if frames > 0 {
        got = interleaved.withUnsafeMutableBufferPointer { Int(sf_readf_float(f, $0.baseAddress!, sf_count_t(frames))) }
    }
    if got < frames {
        // A truncated file: libsndfile returns fewer frames than its header promised.
        let err = sf_error(f)
        if err != 0 { throw FeatureError.unreadable("\(path): \(String(cString: sf_strerror(f)))") }
        interleaved.removeLast((frames - got) * channels)
    }
    var mono: [Float]
    if channels == 1 { mono = interleaved } else {
        mono = [Float](repeating: 0, count: got)
        let c = Float(channels)
        for t in 0..<got {
            var s: Float = 0
            for ch in 0..<channels { s += interleaved[t * channels + ch] }
            mono[t] = s / c
        }
    }
    return DecodedAudio(samples: mono, sampleRate: Double(info.samplerate), channels: channels)
}
