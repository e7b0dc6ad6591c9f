// `skesl bench-audio`: the audio features' speed on one core (decode, resample, ZCR, MFCC,
// chroma_cqt per file), for scripts/bench_extract.py, which times librosa on the same files.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLAudio
import SKESLExtract

struct AudioBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-audio",
        abstract: "Time the native audio features (librosa 0.9.1's load, ZCR, MFCC, chroma_cqt) on every audio file of a tree, on one core.",
        discussion: "Example: skesl bench-audio --input bench-out/extract-corpus --rounds 3")

    @Option(help: "Root of the audio tree (files libsndfile reads).") var input: String
    @Option(help: "Timed passes over the files (after one untimed pass); the best pass is reported.") var rounds = 3

    func run() throws {
        let files = try listAudioFiles(root: input)
        guard !files.isEmpty else { throw ValidationError("\(input): no audio files") }
        let ex = AudioFeatureExtractor()
        var audioSeconds = 0.0, frames = 0
        func pass() throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            audioSeconds = 0; frames = 0
            for f in files {
                let a = try decodeAudioFile(input + "/" + f.relativePath)
                audioSeconds += Double(a.samples.count) / a.sampleRate
                let y = try ex.resampleToTarget(a.samples, rate: a.sampleRate, name: f.relativePath)
                frames += try ex.features(y, name: f.relativePath).frames
            }
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        _ = try pass()
        var best = Double.infinity
        for _ in 0..<max(1, rounds) { best = min(best, try pass()) }
        print(String(format: "bench-audio: %d files, %.1f s of audio, %d frames: best pass %.3f s = %.2f ms/file, %.1f files/s, %.0fx real time (one core)",
                     files.count, audioSeconds, frames, best, 1000 * best / Double(files.count), Double(files.count) / best, audioSeconds / best))
    }
}
