// Dropout whose masks come from the keyed generator: the mask of a sample depends on
// (seed, site, sample id, epoch) only, never on the batch it sits in, the rank or the
// thread count. Masks are kept as bytes for backward.

/// Who the random numbers of one batch are for.
public struct DropoutKeys {
    public var seed: UInt64
    public var epoch: UInt64
    public var sampleIds: UnsafePointer<Int64>
    public init(seed: UInt64, epoch: UInt64, sampleIds: UnsafePointer<Int64>) {
        self.seed = seed; self.epoch = epoch; self.sampleIds = sampleIds
    }
}

public enum Dropout {
    /// Fills `mask` [batch, perSample] with keep (1) / drop (0) for probability p.
    public static func makeMask(_ mask: UnsafeMutablePointer<UInt8>, batch: Int, perSample: Int,
                                p: Float, keys: DropoutKeys, site: UInt64) {
        let threshold = UInt32((Double(p) * 16_777_216.0).rounded())
        // Samples on the worker team: each sample's stream is its own.
        WorkerTeam.shared.forEachChunk(batch, itemSize: perSample) { samples, _ in
            for b in samples {
                let rng = KeyedRandom(seed: keys.seed, stream: site, sample: UInt64(bitPattern: keys.sampleIds[b]),
                                      epoch: keys.epoch)
                let m = mask + b * perSample
                // 8 blocks (32 elements) per vector step: element 4·block + j is word j of block.
                let lanes = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7)
                var i = 0
                while i + 32 <= perSample {
                    let w = philox4x32x8(lanes &+ UInt32(truncatingIfNeeded: i >> 2), rng.c1, rng.c2, rng.c3, key: rng.k0, rng.k1)
                    let t = SIMD8<UInt32>(repeating: threshold)
                    let k0 = (w.0 &>> 8) .>= t, k1 = (w.1 &>> 8) .>= t, k2 = (w.2 &>> 8) .>= t, k3 = (w.3 &>> 8) .>= t
                    for l in 0..<8 {
                        let o = m + i + 4 * l
                        o[0] = k0[l] ? 1 : 0; o[1] = k1[l] ? 1 : 0; o[2] = k2[l] ? 1 : 0; o[3] = k3[l] ? 1 : 0
                    }
                    i += 32
                }
                while i < perSample {
                    let w = rng.block(UInt32(truncatingIfNeeded: i >> 2))
                    m[i] = (w.0 >> 8) >= threshold ? 1 : 0
                    if i + 1 < perSample { m[i + 1] = (w.1 >> 8) >= threshold ? 1 : 0 }
                    if i + 2 < perSample { m[i + 2] = (w.2 >> 8) >= threshold ? 1 : 0 }
                    if i + 3 < perSample { m[i + 3] = (w.3 >> 8) >= threshold ? 1 : 0 }
                    i += 4
                }
            }
        }
    }

    /// Writes elements [start, start+count) of one sample's mask stream: exactly the bytes
    /// `makeMask` gives at those indices, for computing a few rows of a tensor only.
    public static func maskSpan(_ out: UnsafeMutablePointer<UInt8>, start: Int, count: Int, p: Float,
                                keys: DropoutKeys, sample b: Int, site: UInt64) {
        let threshold = UInt32((Double(p) * 16_777_216.0).rounded())
        let rng = KeyedRandom(seed: keys.seed, stream: site, sample: UInt64(bitPattern: keys.sampleIds[b]), epoch: keys.epoch)
        var i = start
        let end = start + count
        while i < end {
            let w = rng.block(UInt32(truncatingIfNeeded: i >> 2))
            let words = (w.0, w.1, w.2, w.3)
            var j = i & 3
            while j < 4 && i < end {
                let word: UInt32 = j == 0 ? words.0 : j == 1 ? words.1 : j == 2 ? words.2 : words.3
                out[i - start] = (word >> 8) >= threshold ? 1 : 0
                i += 1; j += 1
            }
        }
    }

    /// y = x · mask / (1 - p)   (y may alias x)
    public static func apply(_ y: FPtr, _ x: CFPtr, mask: UnsafePointer<UInt8>, count n: Int, p: Float) {
        let s = 1 / (1 - p)
        WorkerTeam.shared.forEachChunk(n) { r, _ in
            // In place gets its own loop (see GELU.backward: the overlap check would fail).
            if UnsafePointer(y) == x {
                for i in r { y[i] = mask[i] != 0 ? y[i] * s : 0 }
            } else {
                for i in r { y[i] = mask[i] != 0 ? x[i] * s : 0 }
            }
        }
    }

    /// dx = dy · mask / (1 - p)   (dx may alias dy)
    public static func backward(_ dx: FPtr, _ dy: CFPtr, mask: UnsafePointer<UInt8>, count n: Int, p: Float) {
        apply(dx, dy, mask: mask, count: n, p: p)
    }
}
