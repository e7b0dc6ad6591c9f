// Learning-rate schedules. Cosine annealing is PyTorch's CosineAnnealingLR: stepped per
// epoch, periodic past T_max (the closed form eta_min + (base - eta_min)(1 + cos(pi t / T))/2,
// which PyTorch's recursive form follows); an optional linear warm-up over steps multiplies it.
#if canImport(Glibc)
import Glibc
#endif

public enum ScheduleKind: String, Codable, Sendable { case constant, cosine }

public struct ScheduleConfig: Codable, Equatable, Sendable {
    public var kind: ScheduleKind = .constant
    public var tMax: Int = 20            // in epochs
    public var etaMin: Float = 0
    public var warmupSteps: Int = 0      // linear warm-up over optimiser steps (0: none)
    public init() {}

    public func validate() throws {
        guard tMax > 0 else { throw ModelError("schedule: tMax must be > 0") }
        guard warmupSteps >= 0 else { throw ModelError("schedule: warmupSteps must be >= 0") }
        guard etaMin >= 0 else { throw ModelError("schedule: etaMin must be >= 0") }
    }

    /// Learning rate for a group with base rate `base` at `epoch` (0-based, the number of
    /// scheduler steps taken) and optimiser step `step` (0-based).
    public func lr(base: Float, epoch: Int, step: Int) -> Float {
        var r: Double
        switch kind {
        case .constant: r = Double(base)
        case .cosine:
            let t = Double(epoch), T = Double(tMax), lo = Double(etaMin)
            r = lo + (Double(base) - lo) * (1 + cos(Double.pi * t / T)) / 2
        }
        if warmupSteps > 0 && step < warmupSteps { r *= Double(step + 1) / Double(warmupSteps) }
        return Float(r)
    }
}
