// `skesl import-hf`: a Hugging Face BERT checkpoint into a skesl weights file.
import ArgumentParser
import SKESLText
import SKESLHuggingFace

struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Import a Hugging Face BERT checkpoint (config.json, safetensors, vocab.txt or tokenizer.json) into a weights file.",
        discussion: """
        The weights file holds the BERT tensors, its config and its vocabulary; pass it to pretrain or \
        finetune with --init-bert (docs/text.md).

        Example: skesl import-hf bert-base-uncased -o bert-base-uncased.h5
        """)

    @Argument(help: "The Hugging Face model directory.")
    var checkpoint: String

    @Option(name: .shortAndLong, help: "The weights file to write (HDF5).")
    var output: String

    func run() throws {
        let r = try HuggingFaceBert.importBert(from: checkpoint, to: output)
        let c = r.config
        print("imported \(r.imported.count) BERT tensors (hidden \(c.hiddenSize), \(c.numHiddenLayers) layers, vocabulary \(c.vocabSize)) into \(output)")
        if !r.convertedFrom.isEmpty {
            print("converted to float32 from \(Set(r.convertedFrom.values).sorted().joined(separator: ", ")): \(r.convertedFrom.count) tensors")
        }
        if !r.ignored.isEmpty {
            print("not imported (pooler, heads, buffers): \(r.ignored.joined(separator: ", "))")
        }
    }
}
