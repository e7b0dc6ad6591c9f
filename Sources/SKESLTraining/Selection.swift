// The validation loss that chooses the best epoch (train.selection). skesl's default is
// the per-sample MAE, the metric it reports. The released SKESL code chooses with its
// valid_epoch instead: the L1 loss averaged within each batch of 32 (the last batch
// partial), then averaged over the batches. On MOSI's 229 validation samples the last
// batch of 5 then weighs 1/8 instead of 5/229, which can move the chosen epoch.
import SKESLKernels

public enum SelectionLoss {
    /// The criterion for one evaluation of the validation split at 0-based `epoch`.
    public static func value(_ e: Trainer.Evaluation, config: SelectionConfig, seed: UInt64, epoch: Int) -> Double {
        guard config.loss == .batchMean else { return e.loss }
        return batchMean(predictions: e.predictions, labels: e.labels,
                         order: order(ids: e.ids, shuffle: config.shuffle, seed: seed, epoch: epoch), batch: config.batch)
    }

    /// main.py's test: an epoch becomes the best when its criterion is strictly lower than
    /// the best so far (ties keep the earlier epoch; the first finite one always wins).
    public static func improves(_ criterion: Double, over best: Double) -> Bool { criterion < best }

    /// The order in which the reference's loader would batch the split: the split's own
    /// order (ascending global id: evaluation gathers ranks' parts, so `ids` need not be
    /// sorted), or a permutation of it keyed by (seed, epoch) for a shuffled loader.
    public static func order(ids: [Int64], shuffle: Bool, seed: UInt64, epoch: Int) -> [Int] {
        let sorted = ids.indices.sorted { ids[$0] < ids[$1] }
        guard shuffle else { return sorted }
        return keyedPermutation(sorted.count, seed: seed, stream: "selection", epoch: UInt64(epoch)).map { sorted[$0] }
    }

    /// Mean over consecutive batches of `batch` samples taken in `order` (the last one
    /// partial) of each batch's mean |prediction - label|. NaN for no samples.
    public static func batchMean(predictions: [Float], labels: [Float], order: [Int], batch: Int) -> Double {
        precondition(batch >= 1 && predictions.count == labels.count && order.count == predictions.count)
        guard !order.isEmpty else { return .nan }
        var sum = 0.0, batches = 0
        var lo = 0
        while lo < order.count {
            let hi = min(lo + batch, order.count)
            var s = 0.0
            for i in order[lo..<hi] { s += Double(abs(predictions[i] - labels[i])) }
            sum += s / Double(hi - lo)
            batches += 1
            lo = hi
        }
        return sum / Double(batches)
    }
}
