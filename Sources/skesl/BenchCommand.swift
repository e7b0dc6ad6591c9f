// `skesl bench`: performance figures, side by side with the PyTorch peer in the same run.
import ArgumentParser
import Foundation
import SKESLBenchmark
import SKESLReporting
import SKESLModel
import SKESLStore
import SKESLTraining
import SKESLKernels
import SKESLHDF5
import SKESLText

/// `bench --task`: which steps to time.
enum BenchTask: String, CaseIterable, ExpressibleByArgument {
    case pretrain
    case pretrainFull = "pretrain-full"
    case finetune, cached
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark training steps at reference shapes against PyTorch (release builds give meaningful figures).",
        discussion: """
        Steps at BERT-base, batch 32, L 39, audio 400x33, video 55x709, 1 OpenBLAS \
        thread by default:
          pretrain       the pretraining step, reference semantics ([MASK]-row path)
          pretrain-full  the same step over every row, as the reference writes it
          finetune       the fine-tuning step (BERT trainable, parameter groups)
          cached         the pretraining step from the frozen-BERT cache, features
                         streamed from a store

        Prints ms/step, samples/s, GFLOP/s, MFU (against this machine's sgemm rate \
        measured in the same run); with --torch, scripts/bench_torch.py runs the PyTorch \
        peer with the same threads (needs `scripts/setup --torch`) and every figure gets \
        its ratio, plus the 100-epoch pretraining cost.

        The cached step also prints the data loader's CPU time per sample and its share \
        of the step (what the prefetch thread adds when it shares the training core), \
        after an untimed pass over the store; pin the run to one core (taskset -c 1) for \
        the figures docs/performance.md gives. Its default store has 256 shards \
        (--shards), more than a run keeps open, as a full corpus does.

        Example: swift build -c release && .build/release/skesl bench --torch --steps 5
        """)

    @Option(help: "Steps to time: pretrain, pretrain-full, finetune, cached (repeatable).")
    var task: [BenchTask] = BenchTask.allCases
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Timed steps (median is reported).") var steps = 5
    @Option(help: "OpenBLAS threads (and torch threads).") var threads = 1
    @Flag(help: "Also run the PyTorch peer (scripts/bench_torch.py) in the same run.") var torch = false
    @Option(help: "Python with torch for --torch.") var python = ".venv/bin/python"
    @Option(help: "Store for the cached step (default: a synthetic store at reference shapes in a temporary directory, of --shards shards).")
    var store: String?
    @Option(help: "Shards of the default store for the cached step: more than a run keeps open, as a full corpus has (VoxCeleb at 5,000 samples per shard: 257).")
    var shards = 256
    @Option(help: "Fraction of samples without a lexicon word (random mask) and their mean candidate count, for the 100-epoch cost.")
    var randomFraction = 0.15
    @Option(help: "Mean random-mask candidates per such sample (min(n, 37) tokens).") var candidates = 20.0

    func run() throws {
        var peer: [String: Double] = [:]
        if torch { peer = try runTorch() }
        setComputeThreads(threads)
        let blas = BLASReport.measure(seconds: 1.0)
        let sgemm = blas.sgemmGFLOPs
        print("machine: \(blas.config)")
        print(blas.line)
        // The kernel's results, checked against a plain reference on odd shapes (what the start-up check runs).
        let check = BLASKernel.selfTest()
        print(String(format: "blas: sgemm self-test %@ (%d products of odd shapes; worst error %.3f of its bound)",
                     check.passed ? "passed" : "FAILED", check.shapes, check.worstErrorRatio))
        var ours: [String: Double] = [:]
        var rows: [(String, Double, String, Double?, Double)] = []  // name, ours, peer name, peer, MFU
        for job in task where job != .cached {
            let t = job.rawValue
            var b = ModelBenchmark()
            b.task = job == .finetune ? .finetune : .pretrain
            b.rowPath = job == .pretrain
            b.batch = batch; b.steps = steps; b.threads = threads
            print("skesl \(t): BERT-base, batch \(batch)")
            let r = try b.run()
            print(String(format: "skesl %@: %.1f ms/step, %.2f samples/s, %.1f GFLOP/s of needed work = MFU %.0f%%",
                         t, r.msPerStep, r.samplesPerSecond, r.usefulGFLOPs, 100 * r.usefulGFLOPs / sgemm))
            ours[t] = r.samplesPerSecond
            let peerName = job == .finetune ? "finetune_reference" : "pretrain_reference"
            rows.append((t, r.samplesPerSecond, peerName, peer[peerName], r.usefulGFLOPs / sgemm))
            if job == .pretrain { rows.append((t, r.samplesPerSecond, "pretrain_exact_rewrite", peer["pretrain_exact_rewrite"], r.usefulGFLOPs / sgemm)) }
        }
        if task.contains(.cached) {
            var dir = store
            var tmp: String? = nil
            if dir == nil {
                guard shards >= 1 else { throw ValidationError("--shards must be at least 1") }
                tmp = NSTemporaryDirectory() + "skesl-bench-store-\(getpid())"
                // Small enough for the untimed first pass to cover most of it, so that the
                // timed steps read it as later epochs do (ModelBenchmark.runCached), in
                // `shards` shards: more than stay open (the loader's case at full-corpus scale).
                let samples = max(batch * 16, shards)
                var sc = SynthConfig(samples: samples, spec: FeatureSpec(audioFrames: 400, audioDim: 33, videoFrames: 55, videoDim: 709), seed: 1)
                sc.neutralFraction = Float(randomFraction)
                print("skesl cached: writing a synthetic store of \(samples) samples in \(shards) shard(s) at reference shapes")
                _ = try writeSynthStore(directory: tmp!, config: sc, samplesPerShard: (samples + shards - 1) / shards, overwrite: true)
                dir = tmp
            }
            defer { if let t = tmp { try? FileManager.default.removeItem(atPath: t) } }
            var b = ModelBenchmark()
            b.batch = batch; b.threads = threads
            print("skesl cached: frozen-BERT cache rows, features from \(dir!)")
            let r = try b.runCached(store: dir!, steps: max(steps * 4, 20))
            print(String(format: "skesl cached: %.1f samples/s streamed; the loader's CPU time is %.1f%% of the step (end to end, streamed vs held in memory: %+.1f%%), %.1f GFLOP/s = MFU %.0f%%",
                         r.samplesPerSecond, 100 * r.loaderCPUShare, 100 * r.loaderOverhead, r.usefulGFLOPs, 100 * r.usefulGFLOPs / sgemm))
            ours["cached"] = r.samplesPerSecond
            rows.append(("cached", r.samplesPerSecond, "pretrain_cached", peer["pretrain_cached"], r.usefulGFLOPs / sgemm))
            // 100 epochs: one cache pass (a row per fixed sample, every candidate of a random one), then cached steps.
            var rowsPerSample = (1 - randomFraction) + randomFraction * candidates
            if let measured = try? cacheRowsPerSample(storeDir: dir!) {
                rowsPerSample = measured
                print(String(format: "  cache rows per sample in this store (VADER masking of its transcripts): %.2f", measured))
            } else {
                print("  (no VADER lexicon: assuming \(randomFraction) of samples without a lexicon word, \(candidates) candidates each)")
            }
            let ours100 = rowsPerSample / r.encodeRowsPerSecond + 100 / r.samplesPerSecond
            print(String(format: "skesl 100-epoch pretraining: %.3f core-s per sample (cache pass %.2f rows/sample at %.1f rows/s, then 100 cached epochs)",
                         ours100 * Double(threads), rowsPerSample, r.encodeRowsPerSecond))
            if let ref = peer["pretrain_reference"] {
                let theirs100 = 100 / ref
                print(String(format: "pytorch reference 100-epoch pretraining: %.3f core-s per sample  ->  %.1fx less with skesl",
                             theirs100 * Double(threads), theirs100 / ours100))
            }
        }
        print("\nsummary (samples/s, \(threads) thread(s), same machine, same run):")
        print("  " + "step".padding(toLength: 16, withPad: " ", startingAt: 0) + "skesl".padding(toLength: 10, withPad: " ", startingAt: 0)
              + "pytorch step".padding(toLength: 24, withPad: " ", startingAt: 0) + "pytorch   ratio   MFU")
        for (n, o, pn, p, mfu) in rows {
            let ps = p.map { String(format: "%-9.2f %5.2fx", $0, o / $0) } ?? "-         -     "
            print("  " + n.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "%-10.2f", o)
                  + pn.padding(toLength: 24, withPad: " ", startingAt: 0) + ps + String(format: "  %3.0f%%", 100 * mfu))
        }
    }

    /// Rows the cache holds per sample of a store: 1 for a transcript with a lexicon word,
    /// min(n, 37) for one without (its random mask's candidates). Tokenized with the
    /// synthetic corpus's vocabulary, masked with the VADER lexicon of the venv.
    func cacheRowsPerSample(storeDir: String) throws -> Double {
        let vocab = NSTemporaryDirectory() + "skesl-bench-vocab-\(getpid()).txt"
        try SynthVocabulary.write(to: vocab)
        defer { unlink(vocab) }
        let masker = try SentimentMasker(tokenizer: try BertTokenizer.load(vocab), lexicon: try VaderLexicon.load(try VaderLexicon.locateDefault()))
        let store = try FeatureStore(directory: storeDir)
        var rows = 0, samples = 0
        for i in 0..<store.shardCount {
            for t in try H5File.open(store.shardPath(i)).readStrings(ShardSchema.transcript) {
                let ids = masker.tokenizer.wordPieceIds(t)
                rows += ids.withUnsafeBufferPointer { masker.candidateCount(ids: $0) }
                samples += 1
            }
        }
        return Double(rows) / Double(max(samples, 1))
    }

    func runTorch() throws -> [String: Double] {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ValidationError("--torch needs \(python) with torch: run scripts/setup --torch")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["scripts/bench_torch.py", "--threads", "\(threads)", "--steps", "\(steps)", "--batch", "\(batch)"]
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "\(threads)"
        p.environment = env
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
               let name = obj["bench"] as? String, let sps = obj["samples_per_s"] as? Double {
                figures[name] = sps
            }
        }
        return figures
    }
}
