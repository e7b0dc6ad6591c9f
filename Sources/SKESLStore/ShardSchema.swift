// Dataset names inside a shard file and the storage layout new shards get.
// The figures behind the defaults are in docs/feature-store.md ("Chunking and filters").
import SKESLHDF5

public enum ShardSchema {
    public static let utteranceId = "utterance_id"   // vlen UTF-8 [N]
    public static let transcript = "transcript"      // vlen UTF-8 [N]
    public static let tokens = "tokens"              // int32 [N, L], zero padded
    public static let tokenLength = "token_length"   // int32 [N]
    public static let audio = "audio"                // float32 [N, Ta, Da], zero padded
    public static let audioLength = "audio_length"   // int32 [N], true frames
    public static let video = "video"                // float32 [N, Tv, Dv], zero padded
    public static let videoLength = "video_length"   // int32 [N], true frames
    public static let label = "label"                // float32 [N] (labeled)
    public static let split = "split"                // uint8 [N]: 0 train, 1 valid, 2 test (labeled)
    /// Optional: the file address of each row's chunk, when feature chunks hold one row
    /// (uint64 [N]); the loader then reads rows from a mapping of the file.
    public static func chunkIndex(_ dataset: String) -> String { "chunk_index/" + dataset }

    public static func fileName(_ index: Int) -> String {
        let s = String(index)
        return "shard-" + String(repeating: "0", count: max(0, 5 - s.count)) + s + ".h5"
    }
}

/// How new shards store their datasets.
public struct StoreLayout: Sendable, Equatable {
    /// Feature chunks hold as many samples as fit this many bytes, and at least one.
    /// One sample per chunk at reference shapes (53 KB audio, 156 KB video rows): a
    /// shuffled read then touches exactly the bytes it needs.
    public var featureChunkBytes: Int = 16 << 10
    public var deflate: Int? = nil
    public var shuffle: Bool = false
    /// Per-chunk Fletcher32: the loader detects a corrupt chunk on read.
    public var fletcher32: Bool = true
    /// Rows per chunk of the per-sample scalars and strings.
    public var metaChunkRows: Int = 1024

    public init(featureChunkBytes: Int = 16 << 10, deflate: Int? = nil, shuffle: Bool = false,
                fletcher32: Bool = true, metaChunkRows: Int = 1024) {
        self.featureChunkBytes = featureChunkBytes; self.deflate = deflate; self.shuffle = shuffle
        self.fletcher32 = fletcher32; self.metaChunkRows = metaChunkRows
    }
    public static let `default` = StoreLayout()

    func featureLayout(frames: Int, dim: Int) -> H5Layout {
        let rowBytes = 4 * frames * dim
        let rows = max(1, featureChunkBytes / max(rowBytes, 1))
        return H5Layout(chunk: [rows, frames, dim], deflate: deflate, shuffle: shuffle,
                        fletcher32: fletcher32, maxRows: -1)
    }

    func metaLayout(width: Int? = nil) -> H5Layout {
        let chunk = width.map { [metaChunkRows, $0] } ?? [metaChunkRows]
        return H5Layout(chunk: chunk, deflate: nil, shuffle: false, fletcher32: fletcher32, maxRows: -1)
    }

    /// "deflate(4)+shuffle+fletcher32" style summary.
    public var summary: String {
        var parts: [String] = []
        if shuffle { parts.append("shuffle") }
        if let d = deflate { parts.append("deflate(\(d))") }
        if fletcher32 { parts.append("fletcher32") }
        return parts.isEmpty ? "none" : parts.joined(separator: "+")
    }
}
