// The skesl command line. Each subcommand lives in its own file in this folder.
import ArgumentParser

struct SKESL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skesl",
        abstract: "Distributed trainer for SKESL multimodal sentiment analysis.",
        subcommands: [
            // Subcommands are listed here, one per line.
            Bench.self,
            Report.self,
            Tokenize.self,
            ImportHF.self,
            ExportHF.self,
        ])
}

SKESL.main()
