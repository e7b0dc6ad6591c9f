// Best-epoch selection as the released code chooses (main.valid_epoch's per-batch mean),
// against Tests/Fixtures/training/reference_selection.json (scripts/make_reference_fixtures.py),
// and the reference recipes' configs (docs/model.md, reference quirks).
import Foundation
import SKESLReporting
import XCTest
import CLISupport
import SKESLHDF5
import SKESLKernels
import SKESLModel
@testable import SKESLTraining

final class ReferenceRecipeTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct SelectionFixture: Decodable {
        let batch_size: Int
        let labels: [Float]
        let predictions: [[Float]]
        let batch_mean: [Double]
        let sample_mae: [Double]
        let reference_best_epoch: Int
        let sample_mae_best_epoch: Int
    }

    /// One evaluation as the trainer sees it with two ranks: rank 1's part gathered after
    /// rank 0's, ids not in split order. `loss` is the per-sample MAE, as evaluate computes it.
    func evaluation(_ preds: [Float], _ labels: [Float]) -> Trainer.Evaluation {
        let n = preds.count, half = n / 2
        let order = Array(half..<n) + Array(0..<half)
        var mae = 0.0
        for i in 0..<n { mae += Double(abs(preds[i] - labels[i])) }
        return Trainer.Evaluation(loss: mae / Double(n), metrics: nil, predictions: order.map { preds[$0] },
                                  labels: order.map { labels[$0] }, ids: order.map { Int64(1000 + $0) },
                                  utterances: order.map { "u\($0)" })
    }

    func choose(_ fx: SelectionFixture, _ config: SelectionConfig) -> (losses: [Double], best: Int) {
        var best = Double.infinity, chosen = -1, losses: [Double] = []
        for (e, p) in fx.predictions.enumerated() {
            let v = SelectionLoss.value(evaluation(p, fx.labels), config: config, seed: 0, epoch: e)
            losses.append(v)
            if SelectionLoss.improves(v, over: best) { best = v; chosen = e }
        }
        return (losses, chosen)
    }

    func testBatchMeanSelectsTheReferenceEpoch() throws {
        let url = Self.root.appendingPathComponent("Tests/Fixtures/training/reference_selection.json")
        let fx = try JSONDecoder().decode(SelectionFixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fx.labels.count, 229)
        XCTAssertNotEqual(fx.reference_best_epoch, fx.sample_mae_best_epoch, "the fixture must tell the two apart")
        var reference = SelectionConfig()
        reference.loss = .batchMean
        reference.batch = fx.batch_size
        let r = choose(fx, reference)
        for e in fx.batch_mean.indices {
            XCTAssertEqual(r.losses[e], fx.batch_mean[e], accuracy: 1e-6, "epoch \(e + 1): valid_epoch's loss")
        }
        XCTAssertEqual(r.best, fx.reference_best_epoch)
        let d = choose(fx, SelectionConfig())              // skesl's default: the per-sample MAE
        for e in fx.sample_mae.indices { XCTAssertEqual(d.losses[e], fx.sample_mae[e], accuracy: 1e-6) }
        XCTAssertEqual(d.best, fx.sample_mae_best_epoch)
    }

    func testShuffledBatchesAreKeyedBySeedAndEpoch() throws {
        let n = 229
        let labels = (0..<n).map { Float($0 % 7) - 3 }
        let preds = (0..<n).map { labels[$0] + (($0 >= n - 5) ? 2.5 : 0.1 * Float($0 % 3)) }
        let e = evaluation(preds, labels)
        var c = SelectionConfig()
        c.loss = .batchMean
        let ordered = SelectionLoss.value(e, config: c, seed: 3, epoch: 0)
        c.shuffle = true
        let a = SelectionLoss.value(e, config: c, seed: 3, epoch: 0)
        XCTAssertEqual(a, SelectionLoss.value(e, config: c, seed: 3, epoch: 0))      // deterministic
        XCTAssertNotEqual(a, SelectionLoss.value(e, config: c, seed: 3, epoch: 1))   // a fresh order per epoch
        XCTAssertNotEqual(a, ordered, accuracy: 1e-9)
        // The order is a permutation of the split: every sample counted once.
        let order = SelectionLoss.order(ids: e.ids, shuffle: true, seed: 3, epoch: 0)
        XCTAssertEqual(order.sorted(), Array(0..<n))
    }

    /// The trainer itself: a fine-tuning on 2 ranks keeps the epoch whose per-batch-mean
    /// validation loss (batches of 4, shuffled per epoch) is lowest, and best.h5 holds that
    /// loss, which the reloaded model's validation predictions reproduce.
    func testTrainerSelectsByTheBatchMeanLoss() throws {
        let h = try RunHarness("selection")
        try h.synth(samples: 60, labeled: true)
        let cfg = try h.writeConfig(extra: "task: finetune")
        let sel = ["--set", "train.selection.loss=batch_mean", "--set", "train.selection.batch=4", "--set", "train.selection.shuffle=true"]
        let ft = try h.run(["finetune", "-c", cfg, "--run-dir", h.dir + "/ft", "--epochs", "4"] + sel, np: 2)
        XCTAssertEqual(ft.status, 0, ft.err)
        // "epoch N done: …, valid batch_mean X" for every epoch.
        var perEpoch: [Int: Double] = [:]
        for line in ft.err.split(separator: "\n") where line.contains(" done: ") {
            guard let n = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }),
                  let r = line.range(of: "valid batch_mean ") else { continue }
            perEpoch[n] = Double(line[r.upperBound...].prefix { "0123456789.".contains($0) })
        }
        XCTAssertEqual(perEpoch.count, 4, ft.err)
        let best = h.dir + "/ft/checkpoints/best.h5"
        let f = try H5File.open(best)
        let stored = try f.attribute("best_valid_loss", as: Double.self)
        let epoch = Int(try f.attribute("best_epoch", as: Int64.self))
        // The kept epoch is the first with the lowest printed loss (printed to 4 decimals).
        let lowest = perEpoch.values.min()!
        XCTAssertEqual(perEpoch[epoch + 1]!, lowest, accuracy: 1e-9, "\(perEpoch)")
        XCTAssertTrue(perEpoch.filter { $0.key < epoch + 1 }.values.allSatisfy { $0 > lowest }, "\(perEpoch)")
        XCTAssertEqual(stored, lowest, accuracy: 1e-4)
        // Recompute it from the kept model's validation predictions (`skesl predict`: this test
        // process must not become an MPI singleton, whose variables would reach later mpiruns).
        let pr = try h.run(["predict", "--checkpoint", best, "--store", h.dir + "/store", "--split", "valid"])
        XCTAssertEqual(pr.status, 0, pr.err)
        var preds: [Float] = [], labels: [Float] = [], ids: [Int64] = []
        for line in pr.out.split(separator: "\n").dropFirst() {
            let f = line.split(separator: ",").suffix(3).map(String.init)
            ids.append(Int64(f[0])!); preds.append(Float(f[1])!); labels.append(Float(f[2])!)
        }
        XCTAssertGreaterThan(ids.count, 4)
        var mae = 0.0
        for i in preds.indices { mae += Double(abs(preds[i] - labels[i])) }
        let valid = Trainer.Evaluation(loss: mae / Double(preds.count), metrics: nil, predictions: preds, labels: labels, ids: ids,
                                       utterances: ids.map { "\($0)" })
        var sc = SelectionConfig()
        sc.loss = .batchMean; sc.batch = 4; sc.shuffle = true
        XCTAssertEqual(SelectionLoss.value(valid, config: sc, seed: 11, epoch: epoch), stored, accuracy: 1e-5)
        XCTAssertGreaterThan(abs(valid.loss - stored), 1e-6, "the per-sample MAE would be another number")
    }

    // MARK: the recipes

    func load(_ name: String, _ overrides: [String] = []) throws -> RunConfig {
        try RunConfigLoader.load(path: Self.root.appendingPathComponent("Configs/" + name).path,
                                 overrides: ["data.store=/x"] + overrides)
    }

    func testReferenceConfigsCarryTheReleasedCodesChoices() throws {
        let pre = try load("pretrain-reference.yaml")
        XCTAssertEqual(pre.data.lexicon, .reference)
        XCTAssertEqual(pre.data.lexiconRule, .auto)
        XCTAssertTrue(pre.data.windowAttendsPadding)
        for name in ["finetune-mosi.yaml", "finetune-mosei.yaml"] {
            let ft = try load(name)
            XCTAssertEqual(ft.train.selection.loss, .batchMean, name)
            XCTAssertEqual(ft.train.selection.batch, 32, name)
            XCTAssertFalse(ft.train.selection.shuffle, name)            // main.py: shuffle=False
            XCTAssertEqual(ft.train.schedule.kind, .cosine, name)
        }
        // baseline.py and language_model_classifier.py: one Adam rate 1e-4 on every parameter,
        // no scheduler, BERT trained, 200 epochs of 32, a shuffled validation loader.
        for (name, variant) in [("ablation-no-pretraining.yaml", Variant.full), ("ablation-text-only.yaml", .textOnly)] {
            let c = try load(name)
            XCTAssertEqual(c.task, .finetune, name)
            XCTAssertEqual(c.variant, variant, name)
            XCTAssertEqual(c.initialize.checkpoint, "", name)
            XCTAssertFalse(c.model.freezeBert, name)
            XCTAssertEqual(c.train.optimizer.kind, .adam, name)
            XCTAssertEqual(c.train.optimizer.lr, 1e-4, name)
            XCTAssertTrue(c.train.optimizer.groupLR.isEmpty, name)
            XCTAssertEqual(c.train.schedule.kind, .constant, name)
            XCTAssertEqual(c.train.epochs, 200, name)
            XCTAssertEqual(c.train.globalBatch, 32, name)
            XCTAssertEqual(c.train.selection.loss, .batchMean, name)
            XCTAssertTrue(c.train.selection.shuffle, name)
        }
        XCTAssertThrowsError(try load("ablation-text-only.yaml", ["train.selection.loss=batch"])) {
            XCTAssertTrue("\($0)".contains("train.selection.loss must be sample_mean or batch_mean"), "\($0)")
        }
        XCTAssertThrowsError(try load("pretrain-reference.yaml", ["data.lexiconRule=tabs"])) {
            XCTAssertTrue("\($0)".contains("data.lexiconRule must be auto, vader or reference"), "\($0)")
        }
    }
}
