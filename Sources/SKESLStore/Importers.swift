// Importers into the store format:
// (a) per-utterance files in one directory: <id>.txt (transcript), <id>.npy or
//     <id>.audio.csv (audio frames x features), <id>.openface.csv (OpenFace 2.0 CSV),
//     and for labeled sets labels.csv with lines "id,label,split";
// (b) CMU-MultimodalSDK computational sequences (.csd, HDF5: /<name>/data/<video>/
//     {features, intervals}), aligned to the segments of the labels sequence, with
//     the split given by lists of video ids.
// Features are padded or truncated to the configured frames (reference: 400 / 55).
import Foundation
import SKESLHDF5

public struct ImportOptions: Sendable {
    public var audioFrames = 400
    public var videoFrames = 55
    public var samplesPerShard = 5000
    public var layout = StoreLayout.default
    /// Replace NaN/Inf feature values by 0 (and count them) instead of failing.
    public var replaceNonFinite = false
    public var overwrite = false
    public var name = "imported"
    public init() {}
}

public struct ImportReport: Sendable {
    public var manifest: Manifest
    public var replacedValues = 0
    public var skippedSegments = 0
}

/// Pads/truncates one matrix for the store, checking its width and its values.
func prepareFeatures(_ m: FeatureMatrix, dim: Int, frames: Int, file: String, utterance: String,
                     replace: Bool, replaced: inout Int) throws -> ([Float], Int) {
    guard m.dim == dim else {
        throw StoreError("\(file): utterance \"\(utterance)\" has \(m.dim) features per frame, earlier utterances \(dim); every file of a store must have the same width")
    }
    var v = m.values
    for i in v.indices where !v[i].isFinite {
        guard replace else {
            throw StoreError("\(file): utterance \"\(utterance)\" holds \(v[i]) at frame \(i / dim), feature \(i % dim); fix the file or pass --replace-nonfinite to store 0 there")
        }
        v[i] = 0; replaced += 1
    }
    return padOrTruncate(v, frames: m.frames, dim: dim, target: frames)
}

// MARK: (a) per-utterance files

public func importUtteranceFiles(directory: String, output: String, options: ImportOptions) throws -> ImportReport {
    let fm = FileManager.default
    guard let names = try? fm.contentsOfDirectory(atPath: directory) else { throw StoreError("\(directory): cannot list the directory") }
    let ids = names.filter { $0.hasSuffix(".txt") }.map { String($0.dropLast(4)) }.sorted()
    guard !ids.isEmpty else { throw StoreError("\(directory): no <id>.txt transcripts; see docs/feature-store.md for the per-utterance layout") }
    var labels: [String: (Float, Split)] = [:]
    let labelPath = directory + "/labels.csv"
    let labeled = fm.fileExists(atPath: labelPath)
    if labeled {
        let text = try String(contentsOfFile: labelPath, encoding: .utf8)
        for (ln, line) in text.split(whereSeparator: \.isNewline).enumerated() {
            let c = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if ln == 0 && c.first == "id" { continue }
            guard c.count == 3, let l = Float(c[1]), let s = Split(name: c[2]) else {
                throw StoreError("\(labelPath): line \(ln + 1) is not \"id,label,split\" with split train/valid/test")
            }
            labels[c[0]] = (l, s)
        }
    }
    func audioFile(_ id: String) throws -> (String, FeatureMatrix) {
        let npy = "\(directory)/\(id).npy", csv = "\(directory)/\(id).audio.csv"
        if fm.fileExists(atPath: npy) { return (npy, try readNpy(npy)) }
        if fm.fileExists(atPath: csv) { return (csv, try readFeatureCSV(csv)) }
        throw StoreError("\(directory): utterance \"\(id)\" has no audio features (\(id).npy or \(id).audio.csv)")
    }
    func videoFile(_ id: String) throws -> (String, FeatureMatrix) {
        let p = "\(directory)/\(id).openface.csv"
        guard fm.fileExists(atPath: p) else { throw StoreError("\(directory): utterance \"\(id)\" has no OpenFace features (\(id).openface.csv)") }
        return (p, try readOpenFaceCSV(p))
    }
    let (_, a0) = try audioFile(ids[0]), (_, v0) = try videoFile(ids[0])
    let spec = FeatureSpec(audioFrames: options.audioFrames, audioDim: a0.dim, videoFrames: options.videoFrames,
                           videoDim: v0.dim, tokens: nil, labeled: labeled)
    let w = try StoreWriter(directory: output, name: options.name, spec: spec, samplesPerShard: options.samplesPerShard,
                            layout: options.layout, overwrite: options.overwrite,
                            createdBy: "skesl store import-files \(directory)")
    var replaced = 0
    for id in ids {
        let tpath = "\(directory)/\(id).txt"
        let transcript = try String(contentsOfFile: tpath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let (ap, am) = try audioFile(id), (vp, vm) = try videoFile(id)
        let (a, al) = try prepareFeatures(am, dim: spec.audioDim, frames: spec.audioFrames, file: ap, utterance: id,
                                          replace: options.replaceNonFinite, replaced: &replaced)
        let (v, vl) = try prepareFeatures(vm, dim: spec.videoDim, frames: spec.videoFrames, file: vp, utterance: id,
                                          replace: options.replaceNonFinite, replaced: &replaced)
        var label: Float? = nil, split: Split? = nil
        if labeled {
            guard let (l, s) = labels[id] else { throw StoreError("\(labelPath): no line for utterance \"\(id)\"") }
            label = l; split = s
        }
        try w.append(StoreSample(utteranceId: id, transcript: transcript, audio: a, audioLength: al,
                                 video: v, videoLength: vl, label: label, split: split))
    }
    return ImportReport(manifest: try w.finish(), replacedValues: replaced)
}

// MARK: (b) CMU-MultimodalSDK computational sequences

/// One computational sequence: per video, features [n, d] and intervals [n, 2] (seconds).
final class ComputationalSequence {
    let path: String
    let file: H5File
    let root: String

    init(_ path: String) throws {
        self.path = path
        let f = try H5File.open(path)
        file = f
        let top = try f.children(of: "/")
        guard let name = top.first(where: { f.isGroup("/\($0)/data") }) else {
            throw StoreError("\(path): not a computational sequence (no /<name>/data group)")
        }
        root = "/\(name)/data"
    }

    func videos() throws -> [String] { try file.children(of: root) }

    func intervals(_ vid: String) throws -> [(Double, Double)] {
        let (v, shape) = try file.read("\(root)/\(vid)/intervals", as: Double.self)
        guard shape.count == 2, shape[1] == 2 else { throw StoreError("\(path): \(root)/\(vid)/intervals has shape \(shape), expected [n, 2]") }
        return (0..<shape[0]).map { (v[2 * $0], v[2 * $0 + 1]) }
    }

    func features(_ vid: String) throws -> FeatureMatrix {
        let name = "\(root)/\(vid)/features"
        let (v, shape) = try file.read(name, as: Float.self)
        guard shape.count == 2 else { throw StoreError("\(path): \(name) has shape \(shape), expected [n, d]") }
        return FeatureMatrix(frames: shape[0], dim: shape[1], values: v)
    }

    func words(_ vid: String) throws -> [String] {
        let ds = try file.dataset("\(root)/\(vid)/features")
        let n = try ds.shape().first ?? 0
        return try ds.readStrings(start: 0, count: n)
    }

    func has(_ vid: String) -> Bool { file.exists("\(root)/\(vid)/features") }
}

/// Reads a split list: one video id per line ('#' comments allowed).
public func readIdList(_ path: String) throws -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw StoreError("\(path): cannot read the split list") }
    return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
}

public func importCSD(labels labelsPath: String, words wordsPath: String, audio audioPath: String, video videoPath: String,
                      splitLists: [Split: String], labelColumn: Int = 0, output: String,
                      options: ImportOptions) throws -> ImportReport {
    let labels = try ComputationalSequence(labelsPath), words = try ComputationalSequence(wordsPath)
    let audio = try ComputationalSequence(audioPath), video = try ComputationalSequence(videoPath)
    var splitOf: [String: Split] = [:]
    for (s, p) in splitLists { for v in try readIdList(p) { splitOf[v] = s } }
    guard !splitOf.isEmpty else { throw StoreError("give the train/valid/test lists of video ids (--train, --valid, --test)") }
    let vids = try labels.videos().filter { splitOf[$0] != nil }
    guard let first = vids.first else { throw StoreError("\(labelsPath): none of its videos is in the split lists") }
    let spec = FeatureSpec(audioFrames: options.audioFrames, audioDim: try audio.features(first).dim,
                           videoFrames: options.videoFrames, videoDim: try video.features(first).dim, tokens: nil, labeled: true)
    let w = try StoreWriter(directory: output, name: options.name, spec: spec, samplesPerShard: options.samplesPerShard,
                            layout: options.layout, overwrite: options.overwrite,
                            createdBy: "skesl store import-csd \((labelsPath as NSString).lastPathComponent)")
    var report = ImportReport(manifest: Manifest(name: "", features: spec, labelRange: nil, shards: []))
    var replaced = 0
    for vid in vids {
        for (seq, p) in [(words, wordsPath), (audio, audioPath), (video, videoPath)] where !seq.has(vid) {
            throw StoreError("\(p): no sequence for video \"\(vid)\", which the labels and split lists have")
        }
        let segs = try labels.intervals(vid)
        let lab = try labels.features(vid)
        guard labelColumn < lab.dim else { throw StoreError("\(labelsPath): video \"\(vid)\" has \(lab.dim) label columns; --label-column \(labelColumn) is out of range") }
        let wi = try words.intervals(vid), ww = try words.words(vid)
        let ai = try audio.intervals(vid), af = try audio.features(vid)
        let vi = try video.intervals(vid), vf = try video.features(vid)
        for (k, seg) in segs.enumerated() {
            // A frame or a word belongs to the segment holding its interval's midpoint.
            func inside(_ iv: (Double, Double)) -> Bool { let m = (iv.0 + iv.1) / 2; return m >= seg.0 && m < seg.1 }
            let text = zip(wi, ww).filter { inside($0.0) && $0.1 != "sp" && !$0.1.isEmpty }.map { $0.1 }.joined(separator: " ")
            func select(_ iv: [(Double, Double)], _ m: FeatureMatrix) -> FeatureMatrix {
                var out: [Float] = []; var n = 0
                for (f, x) in iv.enumerated() where f < m.frames && inside(x) {
                    out.append(contentsOf: m.values[(f * m.dim)..<((f + 1) * m.dim)]); n += 1
                }
                return FeatureMatrix(frames: n, dim: m.dim, values: out)
            }
            let uid = "\(vid)_\(k)"
            if text.isEmpty { report.skippedSegments += 1; continue }   // no words in this segment
            let (a, al) = try prepareFeatures(select(ai, af), dim: spec.audioDim, frames: spec.audioFrames, file: audioPath,
                                              utterance: uid, replace: options.replaceNonFinite, replaced: &replaced)
            let (v, vl) = try prepareFeatures(select(vi, vf), dim: spec.videoDim, frames: spec.videoFrames, file: videoPath,
                                              utterance: uid, replace: options.replaceNonFinite, replaced: &replaced)
            try w.append(StoreSample(utteranceId: uid, transcript: text, audio: a, audioLength: al, video: v, videoLength: vl,
                                     label: lab.values[k * lab.dim + labelColumn], split: splitOf[vid]!))
        }
    }
    report.manifest = try w.finish()
    report.replacedValues = replaced
    return report
}
