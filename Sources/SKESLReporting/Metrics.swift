// Regression metrics of multimodal sentiment analysis, with the conventions of the MMSA
// framework's MOSI/MOSEI evaluation, so that figures compare with the literature:
//  - MAE: mean |prediction - label|; Corr: Pearson correlation.
//  - Acc-7 / Acc-5: clip both sides to [-3, 3] / [-2, 2], round half to even (numpy's
//    np.round), count equal classes.
//  - Acc-2 / F1 "has-0": label >= 0 vs prediction >= 0 over all samples.
//  - Acc-2 / F1 "non-0": only samples whose LABEL is not 0; label > 0 vs prediction > 0
//    (a prediction of exactly 0 counts as negative there, as in MMSA).
//  - F1 is scikit-learn's average="weighted": per-class F1 weighted by the class's support
//    among the labels.
// Undefined figures are NaN (JSON null): Corr when either side is constant (numpy gives nan),
// the non-0 figures when no label is non-zero (MMSA raises there).
// Sums run in Double over the Float inputs; MMSA rounds its printed figures to 4 decimals,
// which `table` does for display only.
import Foundation

public struct RegressionMetrics: Codable, Equatable, Sendable {
    public var mae: Double
    public var corr: Double
    public var acc2Has0: Double
    public var f1Has0: Double
    public var acc2Non0: Double
    public var f1Non0: Double
    public var acc7: Double
    public var acc5: Double
    /// Samples evaluated, and those with a non-zero label (the non-0 subset).
    public var count: Int
    public var countNon0: Int

    public init(mae: Double, corr: Double, acc2Has0: Double, f1Has0: Double, acc2Non0: Double,
                f1Non0: Double, acc7: Double, acc5: Double, count: Int, countNon0: Int) {
        self.mae = mae; self.corr = corr
        self.acc2Has0 = acc2Has0; self.f1Has0 = f1Has0
        self.acc2Non0 = acc2Non0; self.f1Non0 = f1Non0
        self.acc7 = acc7; self.acc5 = acc5
        self.count = count; self.countNon0 = countNon0
    }

    /// The metrics of `predictions` against `labels` (same length, finite, at least one).
    public static func compute(predictions: [Float], labels: [Float]) throws -> RegressionMetrics {
        guard predictions.count == labels.count else {
            throw MetricsError.lengthMismatch(predictions: predictions.count, labels: labels.count)
        }
        guard !labels.isEmpty else { throw MetricsError.empty }
        if let i = predictions.firstIndex(where: { !$0.isFinite }) {
            throw MetricsError.notFinite(what: "prediction", index: i, value: predictions[i])
        }
        if let i = labels.firstIndex(where: { !$0.isFinite }) {
            throw MetricsError.notFinite(what: "label", index: i, value: labels[i])
        }
        let n = labels.count
        var absSum = 0.0, sumP = 0.0, sumT = 0.0
        var hit7 = 0, hit5 = 0
        var has0 = BinaryCounts(), non0 = BinaryCounts()
        for i in 0..<n {
            let p = predictions[i], t = labels[i]
            absSum += abs(Double(p) - Double(t))
            sumP += Double(p); sumT += Double(t)
            if classOf(p, bound: 3) == classOf(t, bound: 3) { hit7 += 1 }
            if classOf(p, bound: 2) == classOf(t, bound: 2) { hit5 += 1 }
            has0.add(truth: t >= 0, predicted: p >= 0)
            if t != 0 { non0.add(truth: t > 0, predicted: p > 0) }
        }
        let meanP = sumP / Double(n), meanT = sumT / Double(n)
        // Two-pass (centred) sums, as numpy's corrcoef does, for accuracy on shifted data.
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for i in 0..<n {
            let dp = Double(predictions[i]) - meanP, dt = Double(labels[i]) - meanT
            sxy += dp * dt; sxx += dp * dp; syy += dt * dt
        }
        let corr: Double = (sxx > 0 && syy > 0) ? max(-1, min(1, sxy / (sxx * syy).squareRoot())) : .nan
        return RegressionMetrics(
            mae: absSum / Double(n), corr: corr,
            acc2Has0: has0.accuracy, f1Has0: has0.weightedF1,
            acc2Non0: non0.accuracy, f1Non0: non0.weightedF1,
            acc7: Double(hit7) / Double(n), acc5: Double(hit5) / Double(n),
            count: n, countNon0: non0.total)
    }

    /// The class of Acc-7 (bound 3) or Acc-5 (bound 2): clip, then round half to even.
    @inline(__always)
    static func classOf(_ x: Float, bound: Float) -> Float {
        min(max(x, -bound), bound).rounded(.toNearestOrEven) + 0  // + 0 folds -0 into 0
    }

    /// Named figures in the order the field reports them (for tables and plots).
    public var namedValues: [(key: String, label: String, value: Double)] {
        [("mae", "MAE", mae), ("corr", "Corr", corr),
         ("acc2_has0", "Acc-2 has-0", acc2Has0), ("f1_has0", "F1 has-0", f1Has0),
         ("acc2_non0", "Acc-2 non-0", acc2Non0), ("f1_non0", "F1 non-0", f1Non0),
         ("acc7", "Acc-7", acc7), ("acc5", "Acc-5", acc5)]
    }

    // JSON: snake_case keys; NaN is written as null and null reads back as NaN
    // (JSON has no NaN, and an undefined figure must survive the metrics log).
    enum CodingKeys: String, CodingKey {
        case mae, corr, acc2Has0 = "acc2_has0", f1Has0 = "f1_has0", acc2Non0 = "acc2_non0",
             f1Non0 = "f1_non0", acc7, acc5, count = "n", countNon0 = "n_non0"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func num(_ k: CodingKeys) throws -> Double { try c.decodeIfPresent(Double.self, forKey: k) ?? .nan }
        mae = try num(.mae); corr = try num(.corr)
        acc2Has0 = try num(.acc2Has0); f1Has0 = try num(.f1Has0)
        acc2Non0 = try num(.acc2Non0); f1Non0 = try num(.f1Non0)
        acc7 = try num(.acc7); acc5 = try num(.acc5)
        count = try c.decode(Int.self, forKey: .count)
        countNon0 = try c.decodeIfPresent(Int.self, forKey: .countNon0) ?? 0
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func num(_ v: Double, _ k: CodingKeys) throws {
            if v.isFinite { try c.encode(v, forKey: k) } else { try c.encodeNil(forKey: k) }
        }
        try num(mae, .mae); try num(corr, .corr)
        try num(acc2Has0, .acc2Has0); try num(f1Has0, .f1Has0)
        try num(acc2Non0, .acc2Non0); try num(f1Non0, .f1Non0)
        try num(acc7, .acc7); try num(acc5, .acc5)
        try c.encode(count, forKey: .count); try c.encode(countNon0, forKey: .countNon0)
    }

    /// One JSON object (sorted keys), e.g. for `--json` output.
    public func jsonString() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        // Encoding these plain fields cannot fail: NaN is already mapped to null.
        return String(decoding: (try? enc.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// This set of metrics as a terminal table (see `MetricsTable`).
    public func table(title: String = "value") -> String {
        MetricsTable.render([(title, self)])
    }

    public static func == (a: RegressionMetrics, b: RegressionMetrics) -> Bool {
        func same(_ x: Double, _ y: Double) -> Bool { x == y || (x.isNaN && y.isNaN) }
        return same(a.mae, b.mae) && same(a.corr, b.corr) && same(a.acc2Has0, b.acc2Has0)
            && same(a.f1Has0, b.f1Has0) && same(a.acc2Non0, b.acc2Non0) && same(a.f1Non0, b.f1Non0)
            && same(a.acc7, b.acc7) && same(a.acc5, b.acc5) && a.count == b.count
            && a.countNon0 == b.countNon0
    }
}

/// Confusion counts of a two-class problem, for accuracy and weighted F1.
struct BinaryCounts {
    var tp = 0, tn = 0, fp = 0, fn = 0   // "positive" = true
    var total: Int { tp + tn + fp + fn }

    mutating func add(truth: Bool, predicted: Bool) {
        switch (truth, predicted) {
        case (true, true): tp += 1
        case (false, false): tn += 1
        case (false, true): fp += 1
        case (true, false): fn += 1
        }
    }

    var accuracy: Double { total == 0 ? .nan : Double(tp + tn) / Double(total) }

    /// scikit-learn's f1_score(average="weighted"): F1 of each class = 2TP / (2TP + FP + FN),
    /// weighted by the class's count among the labels. A class only predicted has weight 0.
    var weightedF1: Double {
        guard total > 0 else { return .nan }
        let posSupport = tp + fn, negSupport = tn + fp
        func f1(_ hit: Int, _ wrong: Int) -> Double { hit == 0 ? 0 : 2 * Double(hit) / Double(2 * hit + wrong) }
        let f1Pos = f1(tp, fp + fn), f1Neg = f1(tn, fp + fn)
        return (f1Pos * Double(posSupport) + f1Neg * Double(negSupport)) / Double(total)
    }
}

public enum MetricsError: Error, CustomStringConvertible {
    case lengthMismatch(predictions: Int, labels: Int)
    case empty
    case notFinite(what: String, index: Int, value: Float)

    public var description: String {
        switch self {
        case let .lengthMismatch(p, l):
            return "metrics: \(p) predictions but \(l) labels; evaluate the same samples on both sides"
        case .empty:
            return "metrics: no samples to evaluate; check that the split is not empty"
        case let .notFinite(what, i, v):
            return "metrics: \(what) of sample \(i) is \(v); the model diverged or the label store is corrupt"
        }
    }
}

/// Metrics side by side for the terminal, one column per set (e.g. valid, test):
///
///     metric          valid      test
///     MAE            0.7123    0.7011
///     ...
/// Figures are shown with 4 decimals (as MMSA reports them); undefined ones as "n/a".
public enum MetricsTable {
    public static func render(_ columns: [(String, RegressionMetrics)]) -> String {
        let rowLabels = ["MAE", "Corr", "Acc-2 has-0", "F1 has-0", "Acc-2 non-0", "F1 non-0",
                         "Acc-7", "Acc-5", "samples", "samples non-0"]
        let cells: [[String]] = columns.map { (_, m) in
            m.namedValues.map { formatFigure($0.value) } + ["\(m.count)", "\(m.countNon0)"]
        }
        let header = ["metric"] + columns.map { $0.0 }
        let labelWidth = max(header[0].count, rowLabels.map(\.count).max() ?? 0)
        let widths = columns.indices.map { c in max(header[c + 1].count, cells[c].map(\.count).max() ?? 0) }
        func pad(_ s: String, _ w: Int, left: Bool) -> String {
            let fill = String(repeating: " ", count: max(0, w - s.count))
            return left ? s + fill : fill + s
        }
        var lines = [([pad(header[0], labelWidth, left: true)]
                      + columns.indices.map { pad(header[$0 + 1], widths[$0], left: false) })
                     .joined(separator: "  ")]
        for (r, label) in rowLabels.enumerated() {
            lines.append(([pad(label, labelWidth, left: true)]
                          + columns.indices.map { pad(cells[$0][r], widths[$0], left: false) })
                         .joined(separator: "  "))
        }
        return lines.joined(separator: "\n")
    }

    /// 4 decimals, "n/a" for an undefined figure.
    public static func formatFigure(_ v: Double) -> String {
        v.isFinite ? String(format: "%.4f", v) : "n/a"
    }
}

extension RegressionMetrics: CustomStringConvertible {
    /// The terminal table, so `print(metrics)` reads well.
    public var description: String { table() }
}
