// `skesl shard`: split a store into N shards, merge stores, or reshard N to M, streaming.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLStore

struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Split, merge or reshard stores into a new store of N shards (streaming, bounded memory).",
        discussion: "Examples:\n  skesl shard --shards 8 --out big8 big        (split or reshard one store)\n  skesl shard --shards 1 --out all a b c       (merge stores of the same shapes)")

    @Argument(help: "Input store directories.") var inputs: [String]
    @Option(help: "Output store directory.") var out: String
    @Option(help: "Number of output shards.") var shards: Int
    @Flag(help: "Skip bad samples (and unreadable shards), counting them, instead of stopping.") var skipBadSamples = false
    @Flag(help: "Replace an existing store in --out.") var overwrite = false
    @OptionGroup var layoutOptions: LayoutOptions

    func run() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one input store") }
        guard shards >= 1 else { throw ValidationError("--shards must be at least 1") }
        let layout = try layoutOptions.layout()
        try failingClearly {
            let t0 = Date()
            let r = try reshardStores(inputs: inputs, output: out, shards: shards, layout: layout,
                                      skipBadSamples: skipBadSamples, overwrite: overwrite) { print($0) }
            print("shard: \(r.manifest.totalSamples) samples from \(inputs.count) store(s) into \(r.manifest.shards.count) shard(s) in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s -> \(out)")
            if skipBadSamples { print("shard: \(r.skipped) bad samples skipped") }
        }
    }
}
