// `skesl extract`: audio tree -> feature store, split over MPI ranks, resumable.
//
// The sorted file list is cut into chunks of `filesPerShard` files; chunk c belongs to rank
// c mod size. Phase 1: a rank extracts each of its chunks into a one-shard store under
// <out>/.extract/chunk-NNNNNN.tmp and renames the directory to chunk-NNNNNN when it is
// complete (atomic), so a killed rank loses at most the chunk it was writing, and a rerun
// skips finished chunks (whatever the number of ranks). Phase 2 (after a barrier): the
// shards' places are known from the chunks' sample counts; each rank stamps its own shards
// with their index and global offset, checksums them and moves them into the store (each
// step idempotent). Phase 3 (after a barrier): rank 0 writes extract-report.json and then
// manifest.json, last, and removes .extract.
import Foundation
import SKESLAudio
import SKESLHDF5
import SKESLStore
import SKESLLog

public struct ExtractOptions: Sendable {
    public var audioFrames = 400
    /// Used when the tree holds no OpenFace CSVs: zero video rows of this shape, length 0.
    public var videoFrames = 55
    public var videoDim = 709
    public var filesPerShard = 1000
    public var layout = StoreLayout.default
    public var name = "extracted"
    /// 'CMD {audio}': prints the transcript of the audio file; used where <stem>.txt is missing.
    public var asrCommand: String?
    /// Fail on the first bad file instead of listing and skipping it.
    public var strict = false
    public var overwrite = false
    public var ffmpeg: String? = findExecutable("ffmpeg")
    public var createdBy = "skesl extract"
    public init() {}
}

/// One file that gave no sample, and why.
public struct BadFile: Codable, Sendable, Equatable {
    public var file: String
    public var reason: String
    public var message: String
}

public struct ExtractReport: Codable, Sendable {
    public var files: Int
    public var samples: Int
    public var badFiles: [BadFile]
    public var badByReason: [String: Int]
    public var shards: Int
    public var ranks: Int
    public var filesPerShard: Int
    public var seconds: Double
}

public struct ExtractError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// What the caller provides for running under MPI (single process: rank 0 of 1, no-op barrier).
public struct ExtractCluster {
    public var rank: Int
    public var size: Int
    public var barrier: () throws -> Void
    public init(rank: Int, size: Int, barrier: @escaping () throws -> Void) {
        self.rank = rank; self.size = size; self.barrier = barrier
    }
    public static let single = ExtractCluster(rank: 0, size: 1, barrier: {})
}

/// Crash drill: `SKESL_FAULT_EXTRACT_KILL_AFTER=N` makes a rank send itself SIGKILL after
/// extracting N files in this run (mid-chunk when N is not a multiple of the chunk size), on
/// every rank or only on `SKESL_FAULT_KILL_RANK`. Exact whatever the machine's speed.
/// `SKESL_FAULT_EXTRACT_KILL_PLACING=1` kills a rank while it places its shards: after the
/// first one is stamped and checksummed, before it is moved into the store.
enum ExtractFault {
    static let killPlacing = ProcessInfo.processInfo.environment["SKESL_FAULT_EXTRACT_KILL_PLACING"] == "1"
    static let killAfter: Int? = ProcessInfo.processInfo.environment["SKESL_FAULT_EXTRACT_KILL_AFTER"].flatMap { Int($0) }
    static let killRank: Int? = ProcessInfo.processInfo.environment["SKESL_FAULT_KILL_RANK"].flatMap { Int($0) }
    static func check(filesDone: Int, rank: Int) {
        guard let k = killAfter, k == filesDone, killRank == nil || killRank == rank else { return }
        Log.rank(rank, "SKESL_FAULT_EXTRACT_KILL_AFTER=\(k): killing this rank (SIGKILL)", level: .warning)
        kill(getpid(), SIGKILL)
    }
}

/// The plan a run records, so that a rerun continues only the same extraction.
struct ExtractPlan: Codable, Equatable {
    var files: Int
    var filesPerShard: Int
    var listDigest: String
    var audioFrames: Int
    var videoFrames: Int
    var videoDim: Int
    var labeled: Bool
}

func chunkName(_ c: Int) -> String {
    let s = String(c)
    return "chunk-" + String(repeating: "0", count: max(0, 6 - s.count)) + s
}

func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let tmp = path + ".tmp-\(getpid())"
    try enc.encode(value).write(to: URL(fileURLWithPath: tmp))
    guard rename(tmp, path) == 0 else { throw ExtractError("\(path): cannot write (\(String(cString: strerror(errno))))") }
}

func readJSON<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
    guard let d = FileManager.default.contents(atPath: path) else { throw ExtractError("\(path): cannot read") }
    do { return try JSONDecoder().decode(type, from: d) } catch { throw ExtractError("\(path): unreadable (\(error)); pass --overwrite to start the extraction again") }
}

public final class Extraction {
    let input: String
    let output: String
    let options: ExtractOptions
    let cluster: ExtractCluster
    let log: (String) -> Void
    let work: String
    let fm = FileManager.default

    public init(input: String, output: String, options: ExtractOptions, cluster: ExtractCluster = .single,
                log: @escaping (String) -> Void) {
        self.input = input; self.output = output; self.options = options; self.cluster = cluster; self.log = log
        work = output + "/.extract"
    }

    // MARK: the run

    public func run() throws -> ExtractReport {
        let t0 = Date()
        guard options.filesPerShard >= 1 else { throw ExtractError("--files-per-shard must be at least 1") }
        let manifestPath = output + "/" + manifestFileName
        if cluster.rank == 0 {
            if fm.fileExists(atPath: manifestPath) {
                guard options.overwrite else { throw ExtractError("\(output): a store exists there already; choose another directory or pass --overwrite") }
                try? fm.removeItem(atPath: manifestPath)
            }
            if options.overwrite {
                try? fm.removeItem(atPath: work)
                for f in (try? fm.contentsOfDirectory(atPath: output)) ?? [] where f.hasPrefix("shard-") && f.hasSuffix(".h5") {
                    try? fm.removeItem(atPath: output + "/" + f)
                }
            }
            do { try fm.createDirectory(atPath: work, withIntermediateDirectories: true) } catch {
                throw ExtractError("\(output): cannot create the store directory (\(error.localizedDescription))")
            }
        }
        try cluster.barrier()

        let files = try listAudioFiles(root: input)
        guard !files.isEmpty else { throw ExtractError("\(input): no audio files (.wav, .flac, ... or, with ffmpeg, .m4a, ...) below it") }
        let labelsPath = input + "/labels.csv"
        let labels: [String: (Float, Split)]? = fm.fileExists(atPath: labelsPath) ? try readLabels(labelsPath) : nil
        // Video: from OpenFace CSVs when the tree has any (then every utterance needs one).
        let firstFace = files.first { fm.fileExists(atPath: facePath($0)) }
        var videoDim = options.videoDim
        hasFaces = firstFace != nil
        if let f = firstFace {
            do { videoDim = try readOpenFaceCSV(facePath(f)).dim } catch { throw ExtractError("\(facePath(f)): \(error); the first OpenFace CSV sets the store's video width") }
        }
        let spec = FeatureSpec(audioFrames: options.audioFrames, audioDim: AudioFeatures.dim, videoFrames: options.videoFrames,
                               videoDim: videoDim, tokens: nil, labeled: labels != nil)
        let plan = ExtractPlan(files: files.count, filesPerShard: options.filesPerShard,
                               listDigest: String(format: "%08x", CRC32.of(Array(files.map { $0.relativePath }.joined(separator: "\n").utf8))),
                               audioFrames: spec.audioFrames, videoFrames: spec.videoFrames, videoDim: spec.videoDim, labeled: spec.labeled)
        let planPath = work + "/plan.json"
        if cluster.rank == 0 {
            if fm.fileExists(atPath: planPath) {
                let old = try readJSON(ExtractPlan.self, planPath)
                guard old == plan else {
                    throw ExtractError("\(output): an unfinished extraction with other inputs or options is there (\(work)/plan.json); pass --overwrite to start again")
                }
                log("extract: resuming the unfinished extraction in \(output)")
            } else { try writeJSON(plan, to: planPath) }
        }
        try cluster.barrier()

        let chunks = (files.count + options.filesPerShard - 1) / options.filesPerShard
        let mine = stride(from: cluster.rank, to: chunks, by: cluster.size).map { $0 }
        if cluster.rank == 0 && options.ffmpeg == nil, let f = files.first(where: { ffmpegExtensions.contains($0.ext) }) {
            log("extract: warning: no ffmpeg (none on PATH, or --ffmpeg none), so .\(f.ext) files (e.g. \(f.relativePath)) will be listed as unsupported; apt-get install ffmpeg")
        }
        // Phase 1: extract this rank's unfinished chunks.
        let extractor = AudioFeatureExtractor()
        let progress = ExtractProgress(rank: cluster.rank, size: cluster.size,
                                       files: mine.reduce(0) { $0 + chunkRange($1, total: files.count).count }, log: log)
        var doneThisRun = 0
        for c in mine {
            let range = chunkRange(c, total: files.count)
            if fm.fileExists(atPath: work + "/" + chunkName(c) + "/manifest.json") { progress.skipped(range.count); continue }
            try extractChunk(c, files: Array(files[range]), spec: spec, labels: labels, extractor: extractor) {
                doneThisRun += 1
                progress.file(bad: $0)
                ExtractFault.check(filesDone: doneThisRun, rank: cluster.rank)
            }
        }
        progress.finish()
        try cluster.barrier()

        // Phase 2: place and move this rank's shards.
        var counts = [Int](repeating: 0, count: chunks)
        for c in 0..<chunks {
            let p = work + "/" + chunkName(c) + "/manifest.json"
            if fm.fileExists(atPath: p) {
                counts[c] = try Manifest.load(directory: work + "/" + chunkName(c)).totalSamples
            } else if !fm.fileExists(atPath: work + "/" + chunkName(c) + "/final.json") {
                throw ExtractError("\(work)/\(chunkName(c)): missing after every rank finished; rerun the same command to extract it")
            } else {
                counts[c] = try readJSON(ShardEntry.self, work + "/" + chunkName(c) + "/final.json").samples
            }
        }
        var shardIndex = [Int](repeating: -1, count: chunks), offsets = [Int](repeating: 0, count: chunks)
        var k = 0, off = 0
        for c in 0..<chunks where counts[c] > 0 { shardIndex[c] = k; offsets[c] = off; k += 1; off += counts[c] }
        for c in mine where counts[c] > 0 { try placeShard(c, index: shardIndex[c], offset: offsets[c]) }
        try cluster.barrier()

        // Phase 3: rank 0 writes the report, then the manifest, last, and removes the work files.
        var report = ExtractReport(files: files.count, samples: off, badFiles: [], badByReason: [:], shards: k,
                                   ranks: cluster.size, filesPerShard: options.filesPerShard, seconds: Date().timeIntervalSince(t0))
        if cluster.rank == 0 {
            var entries: [ShardEntry] = []
            var splitCounts: [String: Int]? = labels == nil ? nil : Dictionary(uniqueKeysWithValues: Split.allCases.map { ($0.name, 0) })
            for c in 0..<chunks {
                let dir = work + "/" + chunkName(c)
                let bad = try readJSON([BadFile].self, dir + "/bad.json")
                report.badFiles += bad
                for b in bad { report.badByReason[b.reason, default: 0] += 1 }
                guard counts[c] > 0 else { continue }
                entries.append(try readJSON(ShardEntry.self, dir + "/final.json"))
                if labels != nil {
                    for (n, v) in try readJSON([String: Int].self, dir + "/splits.json") { splitCounts?[n, default: 0] += v }
                }
            }
            try writeJSON(report, to: output + "/extract-report.json")
            let m = Manifest(name: options.name, features: spec, labelRange: labels == nil ? nil : [-3, 3], shards: entries,
                             splits: splitCounts, createdBy: options.createdBy)
            // The row table before the manifest, as the store writer does: a store is
            // complete once its manifest exists (docs/feature-store.md, "Row table").
            try RowTableBuilder.write(directory: output, manifest: m)
            try m.save(directory: output)
            try? fm.removeItem(atPath: work)
        }
        try cluster.barrier()
        return report
    }

    func chunkRange(_ c: Int, total: Int) -> Range<Int> {
        (c * options.filesPerShard)..<min((c + 1) * options.filesPerShard, total)
    }

    func facePath(_ a: AudioInput) -> String { input + "/" + a.id + ".openface.csv" }

    // MARK: phase 1: one chunk

    func extractChunk(_ c: Int, files: [AudioInput], spec: FeatureSpec, labels: [String: (Float, Split)]?,
                      extractor: AudioFeatureExtractor, onFile: (Bool) -> Void) throws {
        let tmp = work + "/" + chunkName(c) + ".tmp"
        try? fm.removeItem(atPath: tmp)   // what a killed attempt left
        let writer = try StoreWriter(directory: tmp, name: chunkName(c), spec: spec, samplesPerShard: max(files.count, 1),
                                     layout: options.layout, labelRange: [-3, 3], createdBy: options.createdBy)
        var bad: [BadFile] = []
        var splitCounts: [String: Int] = [:]
        let zeroVideo = [Float](repeating: 0, count: spec.videoRow)
        for f in files {
            let path = input + "/" + f.relativePath
            do {
                let s = try sample(f, path: path, spec: spec, labels: labels, extractor: extractor, zeroVideo: zeroVideo, scratch: work)
                try writer.append(s)
                if let sp = s.split { splitCounts[sp.name, default: 0] += 1 }
                onFile(false)
            } catch let e as Skip {
                if options.strict { throw ExtractError("\(e.message) (--strict: stopping at the first bad file; without it the file is listed in extract-report.json and skipped)") }
                bad.append(BadFile(file: f.relativePath, reason: e.reason, message: e.message))
                onFile(true)
            }
        }
        try writer.finish()
        try writeJSON(bad, to: tmp + "/bad.json")
        try writeJSON(splitCounts, to: tmp + "/splits.json")
        try fm.moveItem(atPath: tmp, toPath: work + "/" + chunkName(c))
    }

    struct Skip: Error { var reason: String; var message: String }

    func sample(_ f: AudioInput, path: String, spec: FeatureSpec, labels: [String: (Float, Split)]?,
                extractor: AudioFeatureExtractor, zeroVideo: [Float], scratch: String) throws -> StoreSample {
        // Labels and transcripts first: they are cheap, and a file without them is skipped anyway.
        var label: Float? = nil, split: Split? = nil
        if let l = labels {
            guard let (v, s) = l[f.id] else { throw Skip(reason: "no-label", message: "\(path): labels.csv has no line for \"\(f.id)\"") }
            label = v; split = s
        }
        let transcript = try transcriptFor(f, path: path)
        let feats: AudioFeatures
        do {
            let a = try decode(path, ext: f.ext, ffmpeg: options.ffmpeg, scratch: scratch)
            let y = try extractor.resampleToTarget(a.samples, rate: a.sampleRate, name: path)
            feats = try extractor.features(y, name: path)
        } catch let e as FeatureError {
            throw Skip(reason: e.kind, message: e.description)
        }
        let (audio, alen) = padOrTruncate(feats.values, frames: feats.frames, dim: AudioFeatures.dim, target: spec.audioFrames)
        var video = zeroVideo, vlen = 0
        let fp = facePath(f)
        if fm.fileExists(atPath: fp) {
            let m: FeatureMatrix
            do { m = try readOpenFaceCSV(fp) } catch { throw Skip(reason: "bad-openface", message: "\(fp): \(error)") }
            guard m.dim == spec.videoDim else {
                throw Skip(reason: "bad-openface", message: "\(fp): \(m.dim) features per frame, the store's \(spec.videoDim)")
            }
            if let i = m.values.firstIndex(where: { !$0.isFinite }) {
                throw Skip(reason: "bad-openface", message: "\(fp): frame \(i / m.dim), feature \(i % m.dim) is \(m.values[i])")
            }
            (video, vlen) = padOrTruncate(m.values, frames: m.frames, dim: m.dim, target: spec.videoFrames)
        } else if hasFaces {
            throw Skip(reason: "no-openface", message: "\(path): no \(f.id).openface.csv, which other utterances have")
        }
        return StoreSample(utteranceId: f.id, transcript: transcript, audio: audio, audioLength: alen,
                           video: video, videoLength: vlen, label: label, split: split)
    }

    /// Whether any utterance has an OpenFace CSV (then every one needs it); set by run().
    var hasFaces = false

    func transcriptFor(_ f: AudioInput, path: String) throws -> String {
        let tp = input + "/" + f.id + ".txt"
        var text: String
        if fm.fileExists(atPath: tp) {
            do { text = try String(contentsOfFile: tp, encoding: .utf8) } catch {
                throw Skip(reason: "bad-transcript", message: "\(tp): not readable as UTF-8 text")
            }
        } else if let cmd = options.asrCommand {
            let full = cmd.replacingOccurrences(of: "{audio}", with: shellQuote(path))
            let (status, out, err) = try runShell(full)
            guard status == 0 else {
                throw Skip(reason: "asr-failed", message: "\(path): the ASR command exited with \(status): \(err.split(separator: "\n").suffix(2).joined(separator: " / "))")
            }
            text = out
        } else {
            throw Skip(reason: "no-transcript", message: "\(path): no \(f.id).txt and no --asr-command to transcribe it")
        }
        text = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
        guard !text.isEmpty else { throw Skip(reason: "empty-transcript", message: "\(path): the transcript is empty") }
        return text
    }

    // MARK: phase 2: one shard

    /// Stamps the chunk's shard with its place, checksums it and moves it into the store.
    /// Idempotent: a rerun after a kill anywhere in here completes it.
    func placeShard(_ c: Int, index: Int, offset: Int) throws {
        let dir = work + "/" + chunkName(c)
        let src = dir + "/" + ShardSchema.fileName(0), dst = output + "/" + ShardSchema.fileName(index)
        let final = dir + "/final.json"
        if !fm.fileExists(atPath: final) {
            let f = try H5File.open(src, writable: true)
            try f.setAttribute("shard_index", Int32(index))
            try f.setAttribute("global_offset", Int64(offset))
            try f.close()
            let (crc, bytes) = try CRC32.file(src)
            let samples = try Manifest.load(directory: dir).totalSamples
            try writeJSON(ShardEntry(file: ShardSchema.fileName(index), samples: samples, bytes: bytes, crc32: hex32(crc)), to: final)
        }
        if ExtractFault.killPlacing && (ExtractFault.killRank == nil || ExtractFault.killRank == cluster.rank) {
            Log.rank(cluster.rank, "SKESL_FAULT_EXTRACT_KILL_PLACING=1: killing this rank (SIGKILL)", level: .warning)
            kill(getpid(), SIGKILL)
        }
        if fm.fileExists(atPath: src) {
            try? fm.removeItem(atPath: dst)
            try fm.moveItem(atPath: src, toPath: dst)
        }
        guard fm.fileExists(atPath: dst) else { throw ExtractError("\(dst): missing; pass --overwrite to extract again") }
    }
}
