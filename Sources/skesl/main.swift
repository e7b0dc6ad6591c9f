// The skesl command line. Each subcommand lives in its own file in this folder.
import ArgumentParser
import SKESLTraining

struct SKESL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skesl",
        abstract: "Distributed trainer for SKESL multimodal sentiment analysis.",
        subcommands: [
            // Subcommands are listed here, one per line.
            Pretrain.self,
            Finetune.self,
            Evaluate.self,
            Predict.self,
            Bench.self,
            Report.self,
            Tokenize.self,
            SynthCommand.self,
            ShardCommand.self,
            ExtractCommand.self,
            AudioBenchCommand.self,
            SumBenchCommand.self,
            StoreCommand.self,
            ImportHF.self,
            ExportHF.self,
            BLASSelfTestCommand.self,
        ])
}

// Any command may read stores through memory mappings: a bus error there gets a message.
MappedFileFault.install()
// A better OpenBLAS kernel where OpenBLAS fell back to an old one (may re-execute).
BLASSelect.atStartup(arguments: CommandLine.arguments)
SKESL.main()
