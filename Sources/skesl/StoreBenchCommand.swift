// `skesl store bench`, `bench-load`, `bench-layout`: figures for docs/feature-store.md.
// Benchmarks print; they assert nothing. Each loader run is a child process so that its
// peak RSS is its own.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLStore
import SKESLTraining

private func runChild(_ args: [String]) throws -> (seconds: Double, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    let t0 = Date()
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let secs = Date().timeIntervalSince(t0)
    let out = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else { throw StoreError("skesl \(args.joined(separator: " ")) failed:\n\(out)") }
    return (secs, out)
}

private func loadChild(_ dir: String, batches: Int, batch: Int, evict: Bool) throws -> StoreBench.LoadResult {
    var args = ["store", "bench-load", dir, "--batches", "\(batches)", "--batch", "\(batch)"]
    if evict { args.append("--evict") }
    let out = try runChild(args).output
    guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else { throw StoreError("bench-load printed no result:\n\(out)") }
    return try JSONDecoder().decode(StoreBench.LoadResult.self, from: Data(line.utf8))
}

private func mb(_ b: Int) -> String { fmt(Double(b) / 1e6) }

private func dirBytes(_ dir: String) -> Int {
    ((try? Manifest.load(directory: dir))?.shards.reduce(0) { $0 + $1.bytes }) ?? 0
}

struct StoreBenchLoad: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench-load", abstract: "Time the prefetching loader on a store; print one JSON line.",
                                                    shouldDisplay: false)
    @Argument var store: String
    @Option var batches = 1000
    @Option var batch = 32
    @Option var prefetch = 4
    @Option var maxOpenShards = 2
    @Flag var evict = false

    func run() throws {
        try failingClearly {
            if evict { try StoreBench.evictStore(store) }
            let r = try StoreBench.load(directory: store, config: LoaderConfig(globalBatchSize: batch, seed: 1, prefetchDepth: prefetch, maxOpenShards: maxOpenShards), batches: batches)
            let enc = JSONEncoder(); enc.outputFormatting = .sortedKeys
            print(String(decoding: try enc.encode(r), as: UTF8.self))
        }
    }
}

struct StoreBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Scale benchmark: build/verify/load a VoxCeleb-sized synthetic store at small dims against a small one, then loader and disk speed at reference shapes.",
        discussion: "Example: skesl store bench --dir /tmp/store-bench --samples 100000")

    @Option(help: "Working directory (stores are deleted after measuring unless --keep).") var dir: String
    @Option(help: "Utterances of the large store (VoxCeleb1+2: 1,281,762).") var samples = 1_281_762
    @Option(help: "Utterances of the small store.") var small = 10_000
    @Option(help: "Small dims: audio frames, audio dim, video frames, video dim.") var smallDims = "8,4,4,8"
    @Option(help: "Shards of the scale stores (VoxCeleb at 5,000 samples per shard: 257).") var shards = 256
    @Option(help: "Batches the loader-only runs pull (batch 32).") var batches = 3000
    @Option(help: "Optimiser steps of the training runs (batch 32, a tiny model: the loader's share is then at its largest).") var trainSteps = 2000
    @Flag(help: "Skip the training runs through HDF5 (the store without its row table), shown for comparison.") var noHdf5Comparison = false
    @Option(help: "data.residentShardMB of a second training run per store: the bound on mapped shard pages, below the stores' size.") var residentShardMb = 64
    @Option(help: "Utterances of the reference-shape store (0: skip that part).") var referenceSamples = 8000
    @Option(help: "Batches pulled at reference shapes.") var referenceBatches = 150
    @Option(help: "Model step time in seconds to compare with (default: estimate from FLOPs).") var stepSeconds: Double?
    @Flag(help: "Keep the stores.") var keep = false

    /// What a training run (a child `skesl pretrain`) cost: its memory, polled from /proc
    /// while it ran, and the loader's CPU time as the trainer reports it at the end.
    struct TrainFigures {
        var seconds = 0.0
        var mem = ProcessMemory()          // peaks of RssAnon, RssFile, VmHWM; table/shard Rss
        var loaderMicros = Double.nan, loaderShare = Double.nan
    }

    /// A tiny pretraining run (BERT 1 layer of 16, encoder of width 8) on `store`, whose
    /// features have the small dims `d`: everything a real run does, the loader included.
    func train(_ store: String, dims d: [Int], steps: Int, residentMB: Int? = nil) throws -> TrainFigures {
        let work = "\(dir)/train-run"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        try SynthVocabulary.write(to: work + "/vocab.txt")
        // The synthetic corpus's words with their VADER ratings: what masking needs of the lexicon.
        try synthLexicon.map { "\($0.word)\t\($0.score)\t0.5\t[1, 2]" }.joined(separator: "\n").write(toFile: work + "/lexicon.txt", atomically: true, encoding: .utf8)
        let yaml = """
        task: pretrain
        runDir: \(work)/run
        model:
          bert: {vocab_size: \(SynthVocabulary.tokens.count), hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
                 intermediate_size: 32, max_position_embeddings: 24}
          crossmodal: {layers: 2, attentionDim: 8, audioDim: \(d[1]), videoDim: \(d[3]), dropout: 0.5}
          head: {hidden: 8, dropout: 0.5}
        data: {store: \(store), tokenizer: \(work)/vocab.txt, lexicon: \(work)/lexicon.txt, textLength: 16\(residentMB.map { ", residentShardMB: \($0)" } ?? "")}
        train: {epochs: 1000, maxSteps: \(steps), globalBatch: 32, seed: 1, threads: 1, optimizer: {lr: 1.0e-3}}
        checkpoint: {keepLast: 1}
        """
        try yaml.write(toFile: work + "/config.yaml", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["pretrain", "-c", work + "/config.yaml", "--resume", "none"]
        FileManager.default.createFile(atPath: work + "/out.txt", contents: nil)
        let out = FileHandle(forWritingAtPath: work + "/out.txt")!
        p.standardOutput = out; p.standardError = out
        var f = TrainFigures()
        let t0 = Date()
        try p.run()
        var polls = 0
        while p.isRunning {
            if let m = ProcessMemory.status(p.processIdentifier) {
                f.mem.rssAnon = max(f.mem.rssAnon, m.rssAnon); f.mem.rssFile = max(f.mem.rssFile, m.rssFile); f.mem.peak = max(f.mem.peak, m.peak)
            }
            if let s = ProcessMemory.storeMappings(p.processIdentifier) {
                f.mem.tableRss = max(f.mem.tableRss, s.table); f.mem.shardRss = max(f.mem.shardRss, s.shards)
            }
            polls += 1
            usleep(20_000)
        }
        p.waitUntilExit()
        f.seconds = Date().timeIntervalSince(t0)
        try out.close()
        let text = (try? String(contentsOfFile: work + "/out.txt", encoding: .utf8)) ?? ""
        guard p.terminationStatus == 0 else { throw StoreError("skesl pretrain on \(store) failed:\n\(text.suffix(3000))") }
        // "data loader: 3.1 µs CPU per sample, 1.2% of 10.0 s of steps"
        if let line = text.split(separator: "\n").last(where: { $0.contains("data loader:") }) {
            let nums = line.split(whereSeparator: { " %,".contains($0) }).compactMap { Double($0) }
            if nums.count >= 2 { f.loaderMicros = nums[0]; f.loaderShare = nums[1] }
        }
        return f
    }

    func run() throws {
        let d = smallDims.split(separator: ",").compactMap { Int($0) }
        guard d.count == 4, d.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--small-dims takes four positive integers: audio frames, audio dim, video frames, video dim") }
        guard shards >= 1, small >= shards, samples >= shards else { throw ValidationError("--shards must be at least 1 and at most --small") }
        try failingClearly {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            print("== scale: \(small) vs \(samples) utterances in \(shards) shards each, audio \(d[0])x\(d[1]), video \(d[2])x\(d[3]), batch 32")
            var rows: [(n: Int, load: StoreBench.LoadResult, train: TrainFigures)] = []
            for n in [small, samples] {
                let out = "\(dir)/scale-\(n)"
                let build = try runChild(["synth", "--out", out, "--samples", "\(n)", "--audio-frames", "\(d[0])", "--audio-dim", "\(d[1])",
                                          "--video-frames", "\(d[2])", "--video-dim", "\(d[3])", "--samples-per-shard", "\((n + shards - 1) / shards)", "--overwrite"]).seconds
                let verify = try runChild(["store", "verify", out]).seconds
                let load = try loadChild(out, batches: batches, batch: 32, evict: true)
                let size = dirBytes(out)
                let table = (try? FileManager.default.attributesOfItem(atPath: out + "/" + RowTableFormat.fileName)[.size] as? Int) ?? 0
                print("  \(n) utterances: \(mb(size)) MB + row table \(mb(table)) MB (\(fmt(Double(table) / Double(n))) bytes/sample), build \(fmt(build)) s (\(fmt(Double(n) / build, 0))/s), verify \(fmt(verify)) s (\(fmt(Double(n) / verify, 0))/s)")
                print("    loader alone: \(fmt(load.samplesPerSecond, 0)) samples/s over \(load.samples) samples (cold cache), peak RSS \(mb(load.peakRSS)) MB")
                func show(_ what: String, _ t: TrainFigures) {
                    print("    \(what): loader \(fmt(t.loaderMicros)) µs CPU per sample = \(fmt(t.loaderShare))% of the steps; peak RssAnon \(mb(t.mem.rssAnon)) MB, RssFile \(mb(t.mem.rssFile)) MB (row table \(mb(t.mem.tableRss)) MB, shard files \(mb(t.mem.shardRss)) MB), VmHWM \(mb(t.mem.peak)) MB")
                }
                let t0 = try train(out, dims: d, steps: trainSteps)
                show("training run (skesl pretrain, tiny model, \(trainSteps) steps of 32, \(fmt(t0.seconds)) s, default data.residentShardMB)", t0)
                let t = try train(out, dims: d, steps: trainSteps, residentMB: residentShardMb)
                show("same run, data.residentShardMB \(residentShardMb)", t)
                if !noHdf5Comparison {
                    // The same run without the table: every read through HDF5 shard readers.
                    let tablePath = out + "/" + RowTableFormat.fileName, aside = out + "/row-table.aside"
                    try FileManager.default.moveItem(atPath: tablePath, toPath: aside)
                    defer { try? FileManager.default.moveItem(atPath: aside, toPath: tablePath) }
                    let h = try train(out, dims: d, steps: trainSteps)
                    print("    same run through HDF5 (no row table, 64 shards open): loader \(fmt(h.loaderMicros)) µs CPU per sample = \(fmt(h.loaderShare))% of the steps; peak RssAnon \(mb(h.mem.rssAnon)) MB, RssFile \(mb(h.mem.rssFile)) MB, VmHWM \(mb(h.mem.peak)) MB")
                }
                rows.append((n, load, t))
                if !keep && n == samples { try FileManager.default.removeItem(atPath: out) }
            }
            if !keep { try? FileManager.default.removeItem(atPath: "\(dir)/scale-\(small)") }
            let dn = Double(rows[1].n - rows[0].n)
            let anon = Double(rows[1].train.mem.rssAnon - rows[0].train.mem.rssAnon) / dn
            let file = Double(rows[1].train.mem.rssFile - rows[0].train.mem.rssFile) / dn
            let tableB = Double(rows[1].train.mem.tableRss - rows[0].train.mem.tableRss) / dn
            print("  training run memory (data.residentShardMB \(residentShardMb)) from \(small) to \(samples) utterances, per added sample: anonymous \(fmt(anon)) bytes, file-backed \(fmt(file)) bytes, of which the row table \(fmt(tableB)) bytes (target: at most about 32 bytes per sample)")

            guard referenceSamples > 0 else { return }
            let ref = FeatureSpec.reference
            print("== reference shapes: audio \(ref.audioFrames)x\(ref.audioDim), video \(ref.videoFrames)x\(ref.videoDim), \(ref.tokens!) tokens, \(referenceSamples) utterances")
            let vocabPath = "\(dir)/synth-vocab.txt"
            let words = Set((synthSentimentTemplates + synthNeutralTemplates).flatMap { $0.split(separator: " ").map(String.init) } + synthLexicon.map(\.word))
            try (["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words.sorted()).joined(separator: "\n").write(toFile: vocabPath, atomically: true, encoding: .utf8)
            let out = "\(dir)/reference"
            let build = try runChild(["synth", "--out", out, "--samples", "\(referenceSamples)", "--tokens", "39", "--vocab", vocabPath,
                                      "--samples-per-shard", "2000", "--overwrite"]).seconds
            let size = dirBytes(out)
            print("  build \(fmt(build)) s, \(mb(size)) MB (\(fmt(Double(size) / build / 1e6)) MB/s written)")
            let load = try loadChild(out, batches: referenceBatches, batch: 32, evict: true)
            let m = try Manifest.load(directory: out)
            for s in m.shards { StoreBench.evict("\(out)/\(s.file)") }
            let seq = StoreBench.sequentialRead(m.shards.map { "\(out)/\($0.file)" })
            let seqMBs = Double(seq.bytes) / seq.seconds / 1e6
            print("  loader (shuffled, cold cache): \(fmt(load.samplesPerSecond, 0)) samples/s, \(fmt(load.megabytesPerSecond)) MB/s of features, \(fmt(load.millisecondsPerBatch, 2)) ms per batch of 32, peak RSS \(mb(load.peakRSS)) MB (batch pool \(mb(load.poolBytes)) MB)")
            print("  disk sequential read (cold cache): \(fmt(seqMBs)) MB/s over \(mb(seq.bytes)) MB; loader reaches \(fmt(100 * load.megabytesPerSecond / seqMBs))% of it")
            // Pretraining step at batch 32: BERT-base forward 6.7 GFLOP + cross-modal fwd/bwd 2.2 GFLOP per
            // sample (docs), at about 90 GFLOP/s (machine notes: one-thread sgemm).
            let step = stepSeconds ?? (32 * 8.9 / 90)
            print("  model step (batch 32): \(fmt(step * 1000, 0)) ms\(stepSeconds == nil ? " (estimated: 32 x 8.9 GFLOP at 90 GFLOP/s)" : ""); loader needs \(fmt(load.millisecondsPerBatch, 1)) ms per batch = \(fmt(100 * load.millisecondsPerBatch / 1000 / step, 1))% of a step")
            if !keep { try FileManager.default.removeItem(atPath: out) }
        }
    }
}

struct StoreBenchLayout: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-layout",
        abstract: "Compare chunking and filters at reference shapes: write time, size, shuffled cold/warm read speed.",
        discussion: "Example: skesl store bench-layout --dir /tmp/layout-bench --samples 500")
    @Option(help: "Working directory.") var dir: String
    @Option(help: "Utterances per trial store.") var samples = 1000
    @Option(help: "Batches pulled per read trial (batch 32).") var batches = 25

    func run() throws {
        try failingClearly {
            let spec = FeatureSpec(audioFrames: 400, audioDim: 33, videoFrames: 55, videoDim: 709, tokens: nil, labeled: false)
            let trials: [(String, StoreLayout)] = [
                ("1 sample/chunk, no filters", StoreLayout(fletcher32: false)),
                ("1 sample/chunk, fletcher32", StoreLayout(fletcher32: true)),
                ("1 sample/chunk, deflate(1)", StoreLayout(deflate: 1, fletcher32: true)),
                ("1 sample/chunk, shuffle+deflate(1)", StoreLayout(deflate: 1, shuffle: true, fletcher32: true)),
                ("1 sample/chunk, shuffle+deflate(4)", StoreLayout(deflate: 4, shuffle: true, fletcher32: true)),
                ("8 samples/chunk, fletcher32", StoreLayout(featureChunkBytes: 8 * 4 * spec.videoRow, fletcher32: true)),
            ]
            print("trial | write s | MB | cold samples/s | warm samples/s")
            for (name, layout) in trials {
                let out = "\(dir)/layout-trial"
                var cfg = SynthConfig(samples: samples, spec: spec, seed: 1)
                cfg.minLengthFraction = 0.5
                let t0 = Date()
                try writeSynthStore(directory: out, config: cfg, samplesPerShard: samples, layout: layout, overwrite: true)
                let w = Date().timeIntervalSince(t0)
                let size = dirBytes(out)
                try StoreBench.evictStore(out)
                let cold = try StoreBench.load(directory: out, config: LoaderConfig(globalBatchSize: 32, seed: 3), batches: batches)
                let warm = try StoreBench.load(directory: out, config: LoaderConfig(globalBatchSize: 32, seed: 3), batches: batches)
                print("\(name) | \(fmt(w, 2)) | \(mb(size)) | \(fmt(cold.samplesPerSecond, 0)) | \(fmt(warm.samplesPerSecond, 0))")
                try FileManager.default.removeItem(atPath: out)
            }
        }
    }
}
