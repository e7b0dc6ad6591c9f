// `skesl extract`: a tree of audio files (with transcripts, OpenFace CSVs and labels where
// present) to a feature store, with the reference's librosa audio features computed natively.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLDistributed
import SKESLExtract
import SKESLStore
import SKESLLog

struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Extract audio features (librosa 0.9.1's ZCR, MFCC, chroma_cqt; 33 per frame) from a tree of audio files into a feature store.",
        discussion: """
        Each audio file (.wav, .flac, .ogg, .mp3, ... through libsndfile; .m4a, .mp4, ... through ffmpeg when \
        installed) is one utterance whose id is its path without the extension. Beside it: <id>.txt (transcript; \
        otherwise --asr-command transcribes it), <id>.openface.csv (OpenFace 2.0 frames; optional, but all or none), \
        and at the root labels.csv ("id,label,split") for a labeled store. Bad files are listed with their reason \
        in <out>/extract-report.json, counted and skipped (--strict stops instead). Under mpirun every rank takes \
        every size-th chunk of --files-per-shard files and writes its own shards; rank 0 writes the manifest last. \
        A killed run continues where it stopped when the same command is run again. See docs/feature-store.md.

        Examples:
          skesl extract --input corpus/ --out data/corpus-store
          skesl extract --input corpus/ --out data/corpus-store \\
            --asr-command 'scripts/asr_pocketsphinx.py {audio}'
          mpirun -np 64 skesl extract --input /data/voxceleb2/dev/aac \\
            --out /scratch/vox2 --asr-command 'whisper-cli {audio}' \\
            --files-per-shard 2000
        """)

    @Option(help: "Root of the audio tree.") var input: String
    @Option(help: "Output store directory.") var out: String
    @Option(help: "Audio files per shard (the unit of work and of resumption).") var filesPerShard = 1000
    @Option(help: "Command that prints the transcript of {audio} (replaced by the quoted path); used where <id>.txt is missing.")
    var asrCommand: String?
    @Option(help: "Audio frames per utterance (padded or truncated; the reference uses 400).") var audioFrames = 400
    @Option(help: "Video frames per utterance (padded or truncated; the reference uses 55).") var videoFrames = 55
    @Option(help: "Video features per frame when the tree has no OpenFace CSVs (the rows are zeros of length 0).") var videoDim = 709
    @Option(help: "Store name in the manifest.") var name = "extracted"
    @Option(help: "ffmpeg for containers libsndfile cannot decode (default: ffmpeg on PATH; none: decode none).") var ffmpeg: String?
    @Flag(help: "Stop at the first bad file instead of listing and skipping it.") var strict = false
    @Flag(help: "Replace an existing store (and any unfinished extraction) in --out.") var overwrite = false
    @OptionGroup var layoutOptions: LayoutOptions

    func run() throws {
        var o = ExtractOptions()
        o.filesPerShard = filesPerShard; o.asrCommand = asrCommand; o.audioFrames = audioFrames
        o.videoFrames = videoFrames; o.videoDim = videoDim; o.name = name; o.strict = strict; o.overwrite = overwrite
        o.layout = try layoutOptions.layout()
        if let f = ffmpeg {
            if f == "none" { o.ffmpeg = nil } else {
                guard FileManager.default.isExecutableFile(atPath: f) else { throw ValidationError("--ffmpeg \(f): not an executable file") }
                o.ffmpeg = f
            }
        }
        o.createdBy = "skesl extract --input \(input)"
        guard filesPerShard >= 1 else { throw ValidationError("--files-per-shard must be at least 1") }
        if let a = asrCommand, !a.contains("{audio}") { throw ValidationError("--asr-command must contain {audio}, which is replaced by each file's path") }
        let comm = try Communicator.world()
        let cluster = ExtractCluster(rank: comm.rank, size: comm.size, barrier: { try comm.barrier() })
        let log: (String) -> Void = { Log.info($0) }
        let report: ExtractReport
        do {
            report = try Extraction(input: input, output: out, options: o, cluster: cluster, log: log).run()
        } catch {
            // One rank's failure ends the job: the others would wait at the next barrier.
            if comm.size > 1 { comm.abort(code: 1, message: "rank \(comm.rank): error: \(error)") }
            throw CommandFailure(error)
        }
        if comm.rank == 0 {
            let reasons = report.badByReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print("extract: \(report.samples) samples from \(report.files) files in \(report.shards) shards on \(report.ranks) rank(s), \(String(format: "%.1f", report.seconds)) s; bad files: \(report.badFiles.count)\(reasons.isEmpty ? "" : " (\(reasons))"); list in \(out)/extract-report.json")
        }
        try Communicator.finalize()
    }
}
