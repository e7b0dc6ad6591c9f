// `skesl synth`: a synthetic corpus with a planted multimodal sentiment signal.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLStore
import SKESLTraining
import SKESLLog

/// Storage options shared by the commands that write stores.
struct LayoutOptions: ParsableArguments {
    @Option(help: "Deflate level 1-9 for the feature datasets (default: none; see docs/feature-store.md).")
    var deflate: Int?
    @Flag(help: "Byte-shuffle feature chunks before deflate.")
    var shuffle = false
    @Flag(help: "Store no Fletcher32 checksum per chunk.")
    var noFletcher32 = false
    @Option(help: "Feature chunks hold as many samples as fit this many bytes (at least one).")
    var chunkBytes = 16 << 10

    func layout() throws -> StoreLayout {
        if let d = deflate, !(1...9).contains(d) { throw ValidationError("--deflate takes a level from 1 to 9 (got \(d))") }
        guard chunkBytes >= 1 else { throw ValidationError("--chunk-bytes must be positive") }
        return StoreLayout(featureChunkBytes: chunkBytes, deflate: deflate, shuffle: shuffle, fletcher32: !noFletcher32)
    }
}

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a synthetic corpus (deterministic by seed) with a planted multimodal sentiment signal.",
        discussion: """
        The label mixes the text's lexicon word (about a third of its variance) with latents carried by \
        the audio and video frames, so a model needs all three modalities (docs/feature-store.md). \
        --write-vocab writes a small BERT vocab.txt covering every word of the corpus, for a BERT \
        trained from scratch when no pretrained one is at hand.

        Examples:
          skesl synth --out data/synth-unlabeled --samples 4000 \\
            --audio-frames 100 --video-frames 30 --video-dim 64
          skesl synth --out data/synth-labeled --labeled --samples 1500 --seed 2 \\
            --audio-frames 100 --video-frames 30 --video-dim 64
          skesl synth --write-vocab data/synth-vocab.txt
        """)

    @Option(help: "Output store directory.") var out: String?
    @Option(help: "Write the corpus's vocab.txt ([PAD] [UNK] [CLS] [SEP] [MASK] and its words) to this file.")
    var writeVocab: String?
    @Option(help: "Number of utterances.") var samples = 2000
    @Option(help: "Seed: the same seed gives the same store.") var seed: UInt64 = 0
    @Option(help: "Audio frames per utterance (padded).") var audioFrames = 400
    @Option(help: "Audio features per frame.") var audioDim = 33
    @Option(help: "Video frames per utterance (padded).") var videoFrames = 55
    @Option(help: "Video features per frame.") var videoDim = 709
    @Option(help: "Token ids per utterance (0: store no token ids).") var tokens = 0
    @Option(help: "BERT vocab.txt for the token ids.") var vocab: String?
    @Flag(help: "Write labels in [-3, 3] and train/valid/test splits (fine-tuning sets).") var labeled = false
    @Option(help: "Fraction of sentences without a lexicon word.") var neutralFraction: Float = 0.15
    @Option(help: "Samples per shard file.") var samplesPerShard = 5000
    @Flag(help: "Replace an existing store in --out.") var overwrite = false
    @OptionGroup var layoutOptions: LayoutOptions

    func validate() throws {
        guard out != nil || writeVocab != nil else { throw ValidationError("give --out DIR (a store), --write-vocab FILE, or both") }
    }

    func run() throws {
        if let path = writeVocab {
            try failingClearly {
                do { try SynthVocabulary.write(to: path) } catch {
                    throw StoreError("\(path): cannot write the vocabulary (\(error.localizedDescription)); check the directory exists and is writable")
                }
                print("synth: vocabulary of \(SynthVocabulary.tokens.count) tokens -> \(path)")
            }
        }
        guard let out else { return }
        guard samples >= 0 else { throw ValidationError("--samples must be at least 0") }
        guard (0...1).contains(neutralFraction) else { throw ValidationError("--neutral-fraction must be in [0, 1]") }
        guard tokens >= 0 else { throw ValidationError("--tokens must be at least 0") }
        let layout = try layoutOptions.layout()
        try failingClearly {
            let spec = FeatureSpec(audioFrames: audioFrames, audioDim: audioDim, videoFrames: videoFrames, videoDim: videoDim,
                                   tokens: tokens > 0 ? tokens : nil, labeled: labeled)
            var cfg = SynthConfig(samples: samples, spec: spec, seed: seed)
            cfg.neutralFraction = neutralFraction
            let voc = try vocab.map { try WordVocabulary(path: $0) }
            let t0 = Date()
            let m = try writeSynthStore(directory: out, config: cfg, samplesPerShard: samplesPerShard, layout: layout,
                                        vocabulary: voc, overwrite: overwrite) { n in print("synth: \(n) samples written") }
            let secs = Date().timeIntervalSince(t0)
            let bytes = m.shards.reduce(0) { $0 + $1.bytes }
            print("synth: \(m.totalSamples) samples (\(spec)) in \(m.shards.count) shard(s), \(String(format: "%.1f", Double(bytes) / 1e6)) MB, \(String(format: "%.2f", secs)) s -> \(out)")
        }
    }
}
