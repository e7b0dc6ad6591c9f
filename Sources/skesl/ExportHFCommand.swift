// `skesl export-hf`: the BERT of a weights file or checkpoint as a Hugging Face model directory.
import ArgumentParser
import SKESLText
import SKESLHuggingFace

struct ExportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Export the BERT of a weights file to a directory that transformers' BertModel.from_pretrained loads.",
        discussion: """
        Checkpoints carry no vocabulary: give the tokenizer of the BERT the run started from.

        Examples:
          skesl export-hf bert-base-uncased.h5 -o bert-base-again
          skesl export-hf runs/ft/checkpoints/best.h5 --tokenizer bert-base-uncased \\
            -o bert-finetuned
        """)

    @Argument(help: "The weights file or checkpoint (HDF5).")
    var weights: String

    @Option(name: .shortAndLong, help: "The directory to write (config.json, model.safetensors, vocab.txt).")
    var output: String

    @Option(help: "Copy the vocabulary from this model directory, vocab.txt or tokenizer.json instead of the one stored at import.")
    var tokenizer: String?

    func run() throws {
        try HuggingFaceBert.exportBert(from: weights, to: output, tokenizer: tokenizer)
        print("wrote \(output)/config.json, model.safetensors and the vocabulary")
    }
}
