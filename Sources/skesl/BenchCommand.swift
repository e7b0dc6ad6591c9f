// `skesl bench`: performance figures, side by side with the PyTorch peer.
import ArgumentParser
import Foundation
import SKESLModel
import SKESLTraining

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark the training step at reference shapes (release builds only give meaningful figures).",
        discussion: """
        Times forward + backward + Adam at BERT-base, batch 32, L 39, audio 400x33, video 55x709, prints
        ms/step, samples/s, useful GFLOP/s and the fraction of this machine's sgemm rate measured in the
        same run. With --torch, runs scripts/bench_torch.py (needs `scripts/setup --torch`) with the same
        thread count and prints the ratio.

        Example: swift build -c release && .build/release/skesl bench --task pretrain --steps 5 --threads 1 --torch
        """)

    @Option(help: "pretrain or finetune (or both).") var task: [String] = ["pretrain", "finetune"]
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Timed steps (median is reported).") var steps = 5
    @Option(help: "OpenBLAS threads (one per rank is the default of training).") var threads = 1
    @Flag(help: "Also run the PyTorch peer (scripts/bench_torch.py) in the same run.") var torch = false
    @Option(help: "Python with torch for --torch.") var python = ".venv/bin/python"

    func run() throws {
        var torchFigures: [String: Double] = [:]
        if torch {
            torchFigures = try runTorch()
        }
        for t in task {
            guard let mt = ModelTask(rawValue: t), mt != .textOnly else {
                throw ValidationError("--task must be pretrain or finetune, not \(t)")
            }
            var b = ModelBenchmark()
            b.task = mt; b.batch = batch; b.steps = steps; b.threads = threads
            print("skesl \(t) step: BERT-base, batch \(batch), threads \(threads)")
            let r = try b.run()
            print(String(format: "skesl %@: %.1f ms/step, %.2f samples/s, %.1f useful GFLOP/s = %.0f%% of sgemm (%.1f GFLOP/s measured now)",
                         t, r.msPerStep, r.samplesPerSecond, r.usefulGFLOPs, 100 * r.fractionOfSgemm, r.sgemmGFLOPs))
            if let peer = torchFigures["\(t)_reference"] {
                print(String(format: "pytorch %@ (reference): %.2f samples/s  ->  skesl/pytorch = %.2fx", t, peer, r.samplesPerSecond / peer))
            }
        }
    }

    func runTorch() throws -> [String: Double] {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ValidationError("--torch needs \(python) with torch: run scripts/setup --torch")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["scripts/bench_torch.py", "--threads", "\(threads)", "--steps", "\(steps)", "--batch", "\(batch)"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("scripts/bench_torch.py failed (status \(p.terminationStatus))") }
        var figures: [String: Double] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            print("pytorch: \(line)")
            if let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let name = obj["name"] as? String, let sps = obj["samples_per_s"] as? Double {
                figures[name] = sps
            }
        }
        return figures
    }
}
