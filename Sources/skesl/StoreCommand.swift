// `skesl store`: verify, inspect, import, and benchmark feature stores.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLHDF5
import SKESLStore

struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Verify, inspect, import and benchmark sharded HDF5 feature stores (docs/feature-store.md).",
        discussion: """
        Examples:
          skesl store import-csd --labels CMU_MOSI_Opinion_Labels.csd \\
            --words CMU_MOSI_TimestampedWords.csd --audio CMU_MOSI_COVAREP.csd \\
            --video CMU_MOSI_Visual_OpenFace_2.csd \\
            --train train.txt --valid valid.txt --test test.txt --out data/mosi
          skesl store import-files voxceleb-features/ --out data/voxceleb
          skesl store verify data/mosi
          skesl store inspect data/mosi
        """,
        subcommands: [StoreVerify.self, StoreInspect.self, StoreImportFiles.self, StoreImportCSD.self,
                      StoreBenchCommand.self, StoreBenchLoad.self, StoreBenchLayout.self])
}

func fmt(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

struct StoreVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check checksums, datasets, dimensions, NaN/Inf, lengths, transcripts and label ranges; exit 1 on any problem.",
        discussion: "Example: skesl store verify data/mosi")
    @Argument(help: "Store directory.") var store: String
    @Flag(help: "Skip the CRC-32 of whole shard files.") var noChecksums = false
    @Option(help: "Problems to list at most.") var maxProblems = 50
    @Flag(help: "Write the store's row table (row-table.bin) when the store passes: adds it to stores written without one (older skesl, other tools) or replaces a damaged one.")
    var rebuildRowTable = false

    func run() throws {
        let t0 = Date()
        let r = try failingClearly { try verifyStore(directory: store, checksums: !noChecksums, maxProblems: maxProblems, rebuildRowTable: rebuildRowTable) }
        let secs = Date().timeIntervalSince(t0)
        for p in r.problems { print("problem: \(p)") }
        if r.problemsNotListed > 0 { print("... and \(r.problemsNotListed) more problems") }
        print("verify: \(r.samplesChecked) samples checked in \(fmt(secs, 2)) s (\(fmt(Double(r.bytesHashed) / 1e6)) MB hashed): \(r.badSamples) bad samples, \(r.badShards) bad shards")
        print("verify: row table: \(r.rowTable)")
        if !r.ok { throw ExitCode.failure }
        print("verify: ok")
    }
}

struct StoreInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Print a summary of a store.",
                                                    discussion: "Example: skesl store inspect data/mosi --show 5")
    @Argument(help: "Store directory.") var store: String
    @Option(help: "Samples to show.") var show = 3

    func run() throws {
        try failingClearly {
            let s = try FeatureStore(directory: store)
            let m = s.manifest
            let bytes = m.shards.reduce(0) { $0 + $1.bytes }
            print("store \(store): \"\(m.name)\", schema version \(m.schemaVersion)")
            print("  samples: \(m.totalSamples) in \(m.shards.count) shard(s), \(fmt(Double(bytes) / 1e6)) MB on disk")
            print("  features: \(m.features)")
            if let r = m.labelRange { print("  label range: [\(r[0]), \(r[1])]") }
            if let sp = m.splits { print("  splits: " + Split.allCases.map { "\($0.name) \(sp[$0.name] ?? 0)" }.joined(separator: ", ")) }
            if let c = m.createdBy { print("  created by: \(c)") }
            for (i, e) in m.shards.enumerated() where i < 10 || i == m.shards.count - 1 {
                print("  \(e.file): \(e.samples) samples, \(e.bytes) bytes, crc32 \(e.crc32), global ids \(s.offsets[i])..<\(s.offsets[i + 1])")
                if i == 9 && m.shards.count > 11 { print("  ...") }
            }
            guard !m.shards.isEmpty else { return }
            let f = try H5File.open(s.shardPath(0))
            print("  datasets of \(m.shards[0].file):")
            // Datasets, and those inside groups (the chunk index).
            func list(_ group: String) throws {
                for child in try f.children(of: group) {
                    let name = group == "/" ? child : group + "/" + child
                    if f.isGroup(name) { try list(name); continue }
                    let ds = try f.dataset(name)
                    let st = ds.storage
                    let shape = try ds.shape()
                    print("    /\(name): \(st.typeDescription) \(shape), chunk \(st.chunk.map { "\($0)" } ?? "contiguous"), filters \(st.filters.isEmpty ? "none" : st.filters.joined(separator: "+")), \(st.storedBytes) bytes stored")
                }
            }
            try list("/")
            let loader = try StoreLoader(store: s, config: LoaderConfig(globalBatchSize: max(1, min(show, s.count)), shuffle: false))
            let b = loader.makeBatch(worldSize: 1)
            try loader.fill(b, epoch: 0, positions: 0..<min(show, s.count))
            for i in 0..<b.count {
                let label = b.labels.map { " label \($0[i]) (\(Split(rawValue: b.splits![i])?.name ?? "?"))" } ?? ""
                print("  sample \(b.globalIds[i]) \"\(b.utteranceIds[i])\": \"\(b.transcripts[i])\", audio \(b.audioLengths[i]) frames, video \(b.videoLengths[i]) frames\(label)")
            }
        }
    }
}

struct ImportCommon: ParsableArguments {
    @Option(help: "Output store directory.") var out: String
    @Option(help: "Audio frames per utterance (pad/truncate).") var audioFrames = 400
    @Option(help: "Video frames per utterance (pad/truncate).") var videoFrames = 55
    @Option(help: "Samples per shard file.") var samplesPerShard = 5000
    @Option(help: "Store name in the manifest.") var name = "imported"
    @Flag(help: "Store 0 in place of NaN/Inf feature values (counted) instead of failing.") var replaceNonfinite = false
    @Flag(help: "Replace an existing store in --out.") var overwrite = false
    @OptionGroup var layoutOptions: LayoutOptions

    func options() throws -> ImportOptions {
        guard audioFrames >= 1, videoFrames >= 1, samplesPerShard >= 1 else {
            throw ValidationError("--audio-frames, --video-frames and --samples-per-shard must be at least 1")
        }
        var o = ImportOptions()
        o.audioFrames = audioFrames; o.videoFrames = videoFrames; o.samplesPerShard = samplesPerShard
        o.name = name; o.replaceNonFinite = replaceNonfinite; o.overwrite = overwrite
        o.layout = try layoutOptions.layout()
        return o
    }

    func report(_ r: ImportReport) {
        print("import: \(r.manifest.totalSamples) samples (\(r.manifest.features)) in \(r.manifest.shards.count) shard(s) -> \(out)")
        if let sp = r.manifest.splits { print("import: splits " + Split.allCases.map { "\($0.name) \(sp[$0.name] ?? 0)" }.joined(separator: ", ")) }
        if r.replacedValues > 0 { print("import: \(r.replacedValues) NaN/Inf values stored as 0") }
        if r.skippedSegments > 0 { print("import: \(r.skippedSegments) segments without words skipped") }
    }
}

struct StoreImportFiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-files",
        abstract: "Import per-utterance files: <id>.txt, <id>.npy or <id>.audio.csv, <id>.openface.csv, optional labels.csv (id,label,split).",
        discussion: """
        Without labels.csv the store is unlabeled (pretraining, e.g. VoxCeleb); with it, labeled (fine-tuning).

        Example: skesl store import-files voxceleb-features/ --out data/voxceleb --samples-per-shard 5000
        """)
    @Argument(help: "Directory of per-utterance files.") var directory: String
    @OptionGroup var common: ImportCommon

    func run() throws {
        let o = try common.options()
        try failingClearly { common.report(try importUtteranceFiles(directory: directory, output: common.out, options: o)) }
    }
}

struct StoreImportCSD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-csd",
        abstract: "Import CMU-MultimodalSDK computational sequences (.csd), aligned to the label segments.",
        discussion: """
        The split lists hold one video id per line (the SDK's standard folds saved as files).

        Example:
          skesl store import-csd --labels CMU_MOSI_Opinion_Labels.csd \\
            --words CMU_MOSI_TimestampedWords.csd --audio CMU_MOSI_COVAREP.csd \\
            --video CMU_MOSI_Visual_OpenFace_2.csd \\
            --train train.txt --valid valid.txt --test test.txt --out data/mosi
        """)
    @Option(help: "Labels sequence (e.g. CMU_MOSI_Opinion_Labels.csd).") var labels: String
    @Option(help: "Words sequence (e.g. CMU_MOSI_TimestampedWords.csd).") var words: String
    @Option(help: "Audio features sequence.") var audio: String
    @Option(help: "Video features sequence (e.g. OpenFace).") var video: String
    @Option(help: "File of training video ids, one per line.") var train: String?
    @Option(help: "File of validation video ids.") var valid: String?
    @Option(help: "File of test video ids.") var test: String?
    @Option(help: "Column of the label sequence holding the sentiment.") var labelColumn = 0
    @OptionGroup var common: ImportCommon

    func run() throws {
        let o = try common.options()
        var lists: [Split: String] = [:]
        if let t = train { lists[.train] = t }
        if let v = valid { lists[.valid] = v }
        if let t = test { lists[.test] = t }
        guard !lists.isEmpty else { throw ValidationError("give the split lists: --train, --valid, --test") }
        try failingClearly {
            common.report(try importCSD(labels: labels, words: words, audio: audio, video: video, splitLists: lists,
                                        labelColumn: labelColumn, output: common.out, options: o))
        }
    }
}
