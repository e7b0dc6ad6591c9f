// Adam, AdamW and SGD with torch.optim's semantics over the flat gradient buffer,
// with parameter groups (bert / crossmodal / head) that have their own learning rates.
#if canImport(Glibc)
import Glibc
#endif
import SKESLKernels

public enum OptimizerKind: String, Codable, Sendable { case adam, adamw, sgd }

public struct OptimizerConfig: Codable, Equatable, Sendable {
    public var kind: OptimizerKind = .adam
    /// Learning rate of every group without its own entry in `groupLR`.
    public var lr: Float = 1e-4
    /// Per-group learning rates, e.g. ["bert": 5e-6, "crossmodal": 5e-6, "head": 1e-4].
    public var groupLR: [String: Float] = [:]
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 0
    public var momentum: Float = 0
    public var dampening: Float = 0
    public var nesterov: Bool = false
    /// Clip the global gradient norm to this value (nil: no clipping).
    public var clipNorm: Float? = nil
    public init() {}

    public func validate() throws {
        guard lr >= 0, groupLR.values.allSatisfy({ $0 >= 0 }) else { throw ModelError("optimizer: learning rates must be >= 0") }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else { throw ModelError("optimizer: betas must lie in [0, 1)") }
        guard eps > 0 else { throw ModelError("optimizer: eps must be > 0") }
        guard weightDecay >= 0, momentum >= 0 else { throw ModelError("optimizer: weight_decay and momentum must be >= 0") }
        if nesterov && (momentum <= 0 || dampening != 0) { throw ModelError("optimizer: nesterov needs momentum > 0 and dampening 0") }
        if let c = clipNorm, c <= 0 { throw ModelError("optimizer: clipNorm must be > 0") }
        for k in groupLR.keys where ParameterGroup(rawValue: k) == nil {
            throw ModelError("optimizer: unknown parameter group \"\(k)\" (groups: \(ParameterGroup.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
    }
}

public final class Optimizer {
    public let config: OptimizerConfig
    public let count: Int
    /// First and second moments (Adam) or momentum buffer (SGD, in `m`), over the trainable span.
    public let m: UnsafeMutablePointer<Float>
    public let v: UnsafeMutablePointer<Float>
    public private(set) var step: Int = 0
    /// (start, count, group) of each contiguous run of one group, relative to the trainable span.
    public let segments: [(start: Int, count: Int, group: ParameterGroup)]
    public var groups: [ParameterGroup] { ParameterGroup.allCases.filter { g in segments.contains { $0.group == g } } }

    public convenience init(config: OptimizerConfig, layout: ParameterLayout) {
        self.init(config: config, segments: layout.entries.filter { $0.offset >= layout.trainableStart }.map { ($0.group, $0.count) })
    }

    /// Over a flat span made of consecutive (group, count) runs.
    public init(config: OptimizerConfig, segments runs: [(group: ParameterGroup, count: Int)]) {
        self.config = config
        count = runs.reduce(0) { $0 + $1.count }
        m = .allocate(capacity: max(count, 1)); m.initialize(repeating: 0, count: max(count, 1))
        v = .allocate(capacity: max(count, 1)); v.initialize(repeating: 0, count: max(count, 1))
        var segs: [(Int, Int, ParameterGroup)] = []
        var s = 0
        for r in runs {
            if let last = segs.last, last.2 == r.group { segs[segs.count - 1].1 += r.count }
            else { segs.append((s, r.count, r.group)) }
            s += r.count
        }
        segments = segs.map { (start: $0.0, count: $0.1, group: $0.2) }
    }
    deinit { m.deallocate(); v.deallocate() }

    /// Base learning rate of a group (before the schedule).
    public func baseLR(_ group: ParameterGroup) -> Float { config.groupLR[group.rawValue] ?? config.lr }

    /// Restores the step count (checkpoint resume; the moments are restored by the caller).
    public func setStep(_ s: Int) { step = s }

    /// Global L2 norm of the gradients, computed in double.
    public static func gradNorm(_ g: UnsafePointer<Float>, count: Int) -> Double {
        sumOfSquares(g, 0..<count).squareRoot()
    }

    /// In Double, in index order: the norm's arithmetic, shared by the whole and sharded clip.
    static func sumOfSquares(_ g: UnsafePointer<Float>, _ range: Range<Int>) -> Double {
        var s: Double = 0
        for i in range { let x = Double(g[i]); s += x * x }
        return s
    }

    /// Scales elements `range` by max/(norm + 1e-6) when that is below 1.
    static func scale(_ g: UnsafeMutablePointer<Float>, _ range: Range<Int>, norm: Double, maxNorm: Float) {
        let coef = Double(maxNorm) / (norm + 1e-6)
        if coef < 1 { let c = Float(coef); for i in range { g[i] *= c } }
    }

    /// torch.nn.utils.clip_grad_norm_: scales gradients by max/(norm + 1e-6) when above max.
    @discardableResult
    public static func clip(_ g: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Double {
        let norm = gradNorm(g, count: count)
        scale(g, 0..<count, norm: norm, maxNorm: maxNorm)
        return norm
    }

    /// One update of `params` (the trainable span) from `grads`; `lr(group)` gives each
    /// group's learning rate for this step (base rate times the schedule).
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, lr: (ParameterGroup) -> Float) {
        if let c = config.clipNorm { Optimizer.clip(grads, count: count, maxNorm: c) }
        step += 1
        apply(params: params, grads: grads, range: 0..<count, lr: lr)
    }

    /// The sharded update (ZeRO-1, train.shardOptimizer): only elements `shard` of the
    /// parameters and moments change, from gradients that hold the sum over ranks on `shard`
    /// only. Clipping needs the global norm: `sumOverRanks` adds every rank's sum of squares
    /// over its shard. Every element gets the arithmetic of `update`, so with the same
    /// clipping coefficient the shards together equal one whole update, bit for bit.
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, shard: Range<Int>,
                       sumOverRanks: (Double) throws -> Double, lr: (ParameterGroup) -> Float) rethrows {
        precondition(shard.lowerBound >= 0 && shard.upperBound <= count, "shard \(shard) outside 0..<\(count)")
        if let maxNorm = config.clipNorm {
            let norm = try sumOverRanks(Optimizer.sumOfSquares(grads, shard)).squareRoot()
            Optimizer.scale(grads, shard, norm: norm, maxNorm: maxNorm)
        }
        step += 1
        apply(params: params, grads: grads, range: shard, lr: lr)
    }

    /// The update rule over elements `range` of the span, group by group.
    private func apply(params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, range: Range<Int>,
                       lr: (ParameterGroup) -> Float) {
        let c = config
        for seg in segments {
            let part = (seg.start..<seg.start + seg.count).clamped(to: range)
            if part.isEmpty { continue }
            let rate = lr(seg.group)
            let p = params + part.lowerBound, g = grads + part.lowerBound, mm = m + part.lowerBound, vv = v + part.lowerBound
            let n = part.count
            switch c.kind {
            case .adam, .adamw:
                let b1 = c.beta1, b2 = c.beta2
                let bc1 = 1 - powf(b1, Float(step))
                let bc2sqrt = (1 - powf(b2, Float(step))).squareRoot()
                let stepSize = rate / bc1
                let decoupled = c.kind == .adamw
                let wd = c.weightDecay
                let shrink = 1 - rate * wd, eps = c.eps
                // Element by element: the worker team's chunks give the one-thread bits.
                WorkerTeam.shared.forEachChunk(n) { r, _ in
                    for i in r {
                        var gi = g[i]
                        if decoupled { if wd != 0 { p[i] *= shrink } } else if wd != 0 { gi += wd * p[i] }
                        mm[i] += (gi - mm[i]) * (1 - b1)
                        vv[i] = vv[i] * b2 + (1 - b2) * gi * gi
                        let denom = vv[i].squareRoot() / bc2sqrt + eps
                        p[i] -= stepSize * (mm[i] / denom)
                    }
                }
            case .sgd:
                let mu = c.momentum, wd = c.weightDecay, first = step == 1, damp = c.dampening, nesterov = c.nesterov
                WorkerTeam.shared.forEachChunk(n) { r, _ in
                    for i in r {
                        var d = g[i]
                        if wd != 0 { d += wd * p[i] }
                        if mu != 0 {
                            mm[i] = first ? d : mu * mm[i] + (1 - damp) * d
                            d = nesterov ? d + mu * mm[i] : mm[i]
                        }
                        p[i] -= rate * d
                    }
                }
            }
        }
    }
}
