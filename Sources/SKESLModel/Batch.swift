// One batch as the model reads it: pointers into the loader's (or a test's) buffers.
import SKESLKernels

public struct Batch {
    public var size: Int            // B
    public var textLength: Int      // L
    public var audioFrames: Int     // Ta
    public var videoFrames: Int     // Tv
    public var inputIds: UnsafePointer<Int32>       // [B, L]
    public var tokenTypeIds: UnsafePointer<Int32>   // [B, L]
    public var attentionMask: UnsafePointer<Int32>  // [B, L]
    public var audio: UnsafePointer<Float>          // [B, Ta, Da]
    public var video: UnsafePointer<Float>          // [B, Tv, Dv]
    public var audioLengths: UnsafePointer<Int32>   // [B]
    public var videoLengths: UnsafePointer<Int32>   // [B]
    public var maskPositions: UnsafePointer<Int32>  // [B] (pretraining)
    public var targets: UnsafePointer<Float>        // [B]
    public var sampleIds: UnsafePointer<Int64>      // [B] global ids: key the dropout masks

    public init(size: Int, textLength: Int, audioFrames: Int, videoFrames: Int,
                inputIds: UnsafePointer<Int32>, tokenTypeIds: UnsafePointer<Int32>, attentionMask: UnsafePointer<Int32>,
                audio: UnsafePointer<Float>, video: UnsafePointer<Float>,
                audioLengths: UnsafePointer<Int32>, videoLengths: UnsafePointer<Int32>,
                maskPositions: UnsafePointer<Int32>, targets: UnsafePointer<Float>, sampleIds: UnsafePointer<Int64>) {
        self.size = size; self.textLength = textLength; self.audioFrames = audioFrames; self.videoFrames = videoFrames
        self.inputIds = inputIds; self.tokenTypeIds = tokenTypeIds; self.attentionMask = attentionMask
        self.audio = audio; self.video = video; self.audioLengths = audioLengths; self.videoLengths = videoLengths
        self.maskPositions = maskPositions; self.targets = targets; self.sampleIds = sampleIds
    }
}

/// Owned storage for a batch (tests, benchmarks, the loader's pool).
public final class BatchStorage {
    public let size: Int, textLength: Int, audioFrames: Int, audioDim: Int, videoFrames: Int, videoDim: Int
    public let inputIds, tokenTypeIds, attentionMask: UnsafeMutablePointer<Int32>
    public let audio, video: UnsafeMutablePointer<Float>
    public let audioLengths, videoLengths, maskPositions: UnsafeMutablePointer<Int32>
    public let targets: UnsafeMutablePointer<Float>
    public let sampleIds: UnsafeMutablePointer<Int64>

    public init(size: Int, textLength: Int, audioFrames: Int, audioDim: Int, videoFrames: Int, videoDim: Int) {
        self.size = size; self.textLength = textLength; self.audioFrames = audioFrames; self.audioDim = audioDim
        self.videoFrames = videoFrames; self.videoDim = videoDim
        func ints(_ n: Int) -> UnsafeMutablePointer<Int32> {
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1)); p.initialize(repeating: 0, count: max(n, 1)); return p
        }
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1)); p.initialize(repeating: 0, count: max(n, 1)); return p
        }
        inputIds = ints(size * textLength); tokenTypeIds = ints(size * textLength); attentionMask = ints(size * textLength)
        audio = floats(size * audioFrames * audioDim); video = floats(size * videoFrames * videoDim)
        audioLengths = ints(size); videoLengths = ints(size); maskPositions = ints(size)
        targets = floats(size)
        sampleIds = .allocate(capacity: max(size, 1)); sampleIds.initialize(repeating: 0, count: max(size, 1))
    }
    deinit {
        for p in [inputIds, tokenTypeIds, attentionMask, audioLengths, videoLengths, maskPositions] { p.deallocate() }
        audio.deallocate(); video.deallocate(); targets.deallocate(); sampleIds.deallocate()
    }

    /// A view of rows [start, start+count) (micro-batches for gradient accumulation).
    public func batch(start: Int = 0, count: Int? = nil) -> Batch {
        let n = count ?? size - start
        let L = textLength
        return Batch(size: n, textLength: L, audioFrames: audioFrames, videoFrames: videoFrames,
                     inputIds: inputIds + start * L, tokenTypeIds: tokenTypeIds + start * L,
                     attentionMask: attentionMask + start * L,
                     audio: audio + start * audioFrames * audioDim, video: video + start * videoFrames * videoDim,
                     audioLengths: audioLengths + start, videoLengths: videoLengths + start,
                     maskPositions: maskPositions + start, targets: targets + start, sampleIds: sampleIds + start)
    }
}
