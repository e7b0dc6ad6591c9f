// Writes a store: rows are buffered in blocks and appended to extendable datasets;
// a shard is closed (and its CRC-32 taken) when it holds `samplesPerShard` samples;
// `finish` writes manifest.json last, so a store without a manifest is an unfinished one.
import Foundation
import SKESLHDF5

/// One utterance as importers hand it over; features are already padded/truncated
/// to the store's frames (see `padOrTruncate`).
public struct StoreSample {
    public var utteranceId: String
    public var transcript: String
    public var tokens: [Int32]?
    public var tokenLength: Int
    public var audio: [Float]
    public var audioLength: Int
    public var video: [Float]
    public var videoLength: Int
    public var label: Float?
    public var split: Split?

    public init(utteranceId: String, transcript: String, tokens: [Int32]? = nil, tokenLength: Int = 0,
                audio: [Float], audioLength: Int, video: [Float], videoLength: Int,
                label: Float? = nil, split: Split? = nil) {
        self.utteranceId = utteranceId; self.transcript = transcript
        self.tokens = tokens; self.tokenLength = tokenLength
        self.audio = audio; self.audioLength = audioLength
        self.video = video; self.videoLength = videoLength
        self.label = label; self.split = split
    }
}

/// Copies `frames` rows of `dim` values from `src` into a `target x dim` zero-padded
/// buffer, truncating longer inputs (the reference keeps the first frames).
/// Returns the true length kept.
@discardableResult
public func padOrTruncate(_ src: UnsafeBufferPointer<Float>, frames: Int, dim: Int, target: Int,
                          into out: UnsafeMutablePointer<Float>) -> Int {
    let keep = min(frames, target)
    if keep > 0, let s = src.baseAddress { out.update(from: s, count: keep * dim) }
    (out + keep * dim).update(repeating: 0, count: (target - keep) * dim)
    return keep
}

public func padOrTruncate(_ src: [Float], frames: Int, dim: Int, target: Int) -> (values: [Float], length: Int) {
    var out = [Float](repeating: 0, count: target * dim)
    let n = src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { padOrTruncate(s, frames: frames, dim: dim, target: target, into: $0.baseAddress!) } }
    return (out, n)
}

public final class StoreWriter {
    public let directory: String
    public let name: String
    public let spec: FeatureSpec
    public let samplesPerShard: Int
    /// Exact sizes of the shards to write (resharding to M shards); nil = samplesPerShard each.
    public let shardSizes: [Int]?
    public let layout: StoreLayout
    public let labelRange: [Float]?
    public var createdBy: String?

    private var shards: [ShardEntry] = []
    private var splitCounts: [Split: Int] = [:]
    private var total = 0
    private let blockRows: Int

    // The open shard and its block buffers.
    private var file: H5File?
    private var rowsInShard = 0
    private var ids: [String] = [], texts: [String] = []
    private var audio: [Float] = [], video: [Float] = [], tokens: [Int32] = []
    private var audioLen: [Int32] = [], videoLen: [Int32] = [], tokenLen: [Int32] = []
    private var labels: [Float] = [], splits: [UInt8] = []

    public init(directory: String, name: String, spec: FeatureSpec, samplesPerShard: Int,
                layout: StoreLayout = .default, labelRange: [Float]? = [-3, 3],
                overwrite: Bool = false, createdBy: String? = nil, shardSizes: [Int]? = nil) throws {
        try spec.validate(directory)
        self.shardSizes = shardSizes
        guard samplesPerShard >= 1 else { throw StoreError("samples per shard must be at least 1 (got \(samplesPerShard))") }
        self.directory = directory; self.name = name; self.spec = spec
        self.samplesPerShard = samplesPerShard; self.layout = layout
        self.labelRange = spec.labeled ? labelRange : nil
        self.createdBy = createdBy
        blockRows = max(1, min(256, (8 << 20) / max(spec.featureBytes, 1)))
        let fm = FileManager.default
        if fm.fileExists(atPath: directory + "/" + manifestFileName) {
            guard overwrite else { throw StoreError("\(directory): a store exists there already; choose another directory or pass --overwrite") }
            try fm.removeItem(atPath: directory + "/" + manifestFileName)
        }
        // A table left from an earlier store there would describe other shards.
        try? fm.removeItem(atPath: directory + "/" + RowTableFormat.fileName)
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw StoreError("\(directory): cannot create the store directory (\(error.localizedDescription))")
        }
        if overwrite, let old = try? fm.contentsOfDirectory(atPath: directory) {
            for f in old where f.hasPrefix("shard-") && f.hasSuffix(".h5") { try? fm.removeItem(atPath: directory + "/" + f) }
        }
    }

    public var samplesWritten: Int { total }

    public func append(_ s: StoreSample) throws {
        guard s.audio.count == spec.audioRow else { throw StoreError("\(s.utteranceId): audio has \(s.audio.count) values, the store expects \(spec.audioFrames) x \(spec.audioDim) = \(spec.audioRow)") }
        guard s.video.count == spec.videoRow else { throw StoreError("\(s.utteranceId): video has \(s.video.count) values, the store expects \(spec.videoFrames) x \(spec.videoDim) = \(spec.videoRow)") }
        try s.audio.withUnsafeBufferPointer { a in
            try s.video.withUnsafeBufferPointer { v in
                if let t = s.tokens {
                    try t.withUnsafeBufferPointer { tb in
                        try append(utteranceId: s.utteranceId, transcript: s.transcript, tokens: tb, tokenLength: s.tokenLength,
                                   audio: a.baseAddress!, audioLength: s.audioLength, video: v.baseAddress!, videoLength: s.videoLength,
                                   label: s.label, split: s.split)
                    }
                } else {
                    try append(utteranceId: s.utteranceId, transcript: s.transcript, tokens: nil, tokenLength: 0,
                               audio: a.baseAddress!, audioLength: s.audioLength, video: v.baseAddress!, videoLength: s.videoLength,
                               label: s.label, split: s.split)
                }
            }
        }
    }

    /// Appends one sample: `audio` holds audioFrames*audioDim values, `video` videoFrames*videoDim.
    /// Values are not judged here (verify and the loader do); structure is.
    public func append(utteranceId: String, transcript: String, tokens: UnsafeBufferPointer<Int32>?, tokenLength: Int,
                       audio a: UnsafePointer<Float>, audioLength: Int, video v: UnsafePointer<Float>, videoLength: Int,
                       label: Float?, split: Split?) throws {
        guard (0...spec.audioFrames).contains(audioLength), (0...spec.videoFrames).contains(videoLength) else {
            throw StoreError("\(utteranceId): lengths audio \(audioLength) / video \(videoLength) outside 0...\(spec.audioFrames) / 0...\(spec.videoFrames)")
        }
        if let L = spec.tokens {
            guard let t = tokens, t.count == L, (0...L).contains(tokenLength) else {
                throw StoreError("\(utteranceId): the store holds \(L) token ids per sample; give exactly \(L) (padded) and a length in 0...\(L)")
            }
            self.tokens.append(contentsOf: t); tokenLen.append(Int32(tokenLength))
        }
        if spec.labeled {
            guard let l = label, let sp = split else { throw StoreError("\(utteranceId): a labeled store needs a label and a split for every sample") }
            labels.append(l); splits.append(sp.rawValue); splitCounts[sp, default: 0] += 1
        }
        ids.append(utteranceId); texts.append(transcript)
        audio.append(contentsOf: UnsafeBufferPointer(start: a, count: spec.audioRow)); audioLen.append(Int32(audioLength))
        video.append(contentsOf: UnsafeBufferPointer(start: v, count: spec.videoRow)); videoLen.append(Int32(videoLength))
        total += 1
        if ids.count >= blockRows || rowsInShard + ids.count >= currentCapacity { try flushBlock() }
    }

    /// Samples the shard being written takes.
    private var currentCapacity: Int {
        guard let sizes = shardSizes else { return samplesPerShard }
        return shards.count < sizes.count ? max(sizes[shards.count], 1) : samplesPerShard
    }

    private func openShard() throws -> H5File {
        if let f = file { return f }
        let path = directory + "/" + ShardSchema.fileName(shards.count)
        let f = try H5File.create(path)
        let meta = layout.metaLayout()
        let strings = H5Layout(chunk: [layout.metaChunkRows], maxRows: -1)
        _ = try f.createStringDataset(ShardSchema.utteranceId, rows: 0, layout: strings)
        _ = try f.createStringDataset(ShardSchema.transcript, rows: 0, layout: strings)
        _ = try f.createDataset(ShardSchema.audio, of: Float.self, shape: [0, spec.audioFrames, spec.audioDim],
                                layout: layout.featureLayout(frames: spec.audioFrames, dim: spec.audioDim))
        _ = try f.createDataset(ShardSchema.audioLength, of: Int32.self, shape: [0], layout: meta)
        _ = try f.createDataset(ShardSchema.video, of: Float.self, shape: [0, spec.videoFrames, spec.videoDim],
                                layout: layout.featureLayout(frames: spec.videoFrames, dim: spec.videoDim))
        _ = try f.createDataset(ShardSchema.videoLength, of: Int32.self, shape: [0], layout: meta)
        if let L = spec.tokens {
            _ = try f.createDataset(ShardSchema.tokens, of: Int32.self, shape: [0, L], layout: layout.metaLayout(width: L))
            _ = try f.createDataset(ShardSchema.tokenLength, of: Int32.self, shape: [0], layout: meta)
        }
        if spec.labeled {
            _ = try f.createDataset(ShardSchema.label, of: Float.self, shape: [0], layout: meta)
            _ = try f.createDataset(ShardSchema.split, of: UInt8.self, shape: [0], layout: meta)
        }
        file = f
        rowsInShard = 0
        return f
    }

    private func appendRows<T: H5Scalar>(_ f: H5File, _ name: String, _ values: [T], rows: Int) throws {
        let ds = try f.dataset(name)
        try ds.extend(rows: rowsInShard + rows)
        try values.withUnsafeBufferPointer { try ds.writeRows(start: rowsInShard, count: rows, from: $0.baseAddress!) }
    }

    private func flushBlock() throws {
        let n = ids.count
        if n == 0 { return }
        let f = try openShard()
        for (name, strs) in [(ShardSchema.utteranceId, ids), (ShardSchema.transcript, texts)] {
            let ds = try f.dataset(name)
            try ds.extend(rows: rowsInShard + n)
            try ds.writeStrings(strs, start: rowsInShard)
        }
        try appendRows(f, ShardSchema.audio, audio, rows: n)
        try appendRows(f, ShardSchema.audioLength, audioLen, rows: n)
        try appendRows(f, ShardSchema.video, video, rows: n)
        try appendRows(f, ShardSchema.videoLength, videoLen, rows: n)
        if spec.tokens != nil {
            try appendRows(f, ShardSchema.tokens, tokens, rows: n)
            try appendRows(f, ShardSchema.tokenLength, tokenLen, rows: n)
        }
        if spec.labeled {
            try appendRows(f, ShardSchema.label, labels, rows: n)
            try appendRows(f, ShardSchema.split, splits, rows: n)
        }
        rowsInShard += n
        ids.removeAll(keepingCapacity: true); texts.removeAll(keepingCapacity: true)
        audio.removeAll(keepingCapacity: true); video.removeAll(keepingCapacity: true)
        tokens.removeAll(keepingCapacity: true); tokenLen.removeAll(keepingCapacity: true)
        audioLen.removeAll(keepingCapacity: true); videoLen.removeAll(keepingCapacity: true)
        labels.removeAll(keepingCapacity: true); splits.removeAll(keepingCapacity: true)
        if rowsInShard >= currentCapacity { try closeShard() }
    }

    /// Records where each row's feature chunk lies in the file, when chunks hold one row,
    /// so that readers can copy rows from a mapping of the file. HDF5 1.10 finds a chunk's
    /// address only by walking the chunk index (O(rows) a lookup), so this costs O(rows²)
    /// once here (0.1 s for 5,000 rows) instead of on every read.
    private func writeChunkIndex(_ f: H5File) throws {
        try f.flush()   // chunks still in HDF5's cache have no address yet
        for name in [ShardSchema.audio, ShardSchema.video] where rowsInShard > 0 {
            // The reader's own test of whether its rows can be read straight from chunks.
            let ds = try f.dataset(name)
            guard try H5RowReader(ds).readsChunksDirectly else { continue }
            var addresses = [UInt64](repeating: 0, count: rowsInShard)
            for r in 0..<rowsInShard { addresses[r] = UInt64(try ds.chunkLocation([r, 0, 0]).address) }
            try f.write(ShardSchema.chunkIndex(name), addresses)
        }
    }

    private func closeShard() throws {
        guard let f = file else { return }
        let offset = shards.reduce(0) { $0 + $1.samples }
        try f.setAttribute("format", storeFormatName)
        try f.setAttribute("schema_version", Int32(storeSchemaVersion))
        try f.setAttribute("shard_index", Int32(shards.count))
        try f.setAttribute("global_offset", Int64(offset))
        try f.setAttribute("samples", Int64(rowsInShard))
        try writeChunkIndex(f)
        let path = f.path
        try f.close()
        file = nil
        let (crc, bytes) = try CRC32.file(path)
        shards.append(ShardEntry(file: (path as NSString).lastPathComponent, samples: rowsInShard, bytes: bytes, crc32: hex32(crc)))
        rowsInShard = 0
    }

    /// Flushes, closes the last shard and writes the manifest.
    @discardableResult
    public func finish() throws -> Manifest {
        try flushBlock()
        try closeShard()
        var splitsOut: [String: Int]? = nil
        if spec.labeled { splitsOut = Dictionary(uniqueKeysWithValues: Split.allCases.map { ($0.name, splitCounts[$0] ?? 0) }) }
        let m = Manifest(name: name, features: spec, labelRange: labelRange, shards: shards,
                         splits: splitsOut, createdBy: createdBy)
        // The row table before the manifest: a store with a manifest is complete. (A
        // store whose features cannot be mapped gets none and is read through HDF5.)
        try RowTableBuilder.write(directory: directory, manifest: m)
        try m.save(directory: directory)
        return m
    }
}
