// Embedding lookup, pooling, row gathering and the L1 loss.

public enum Embedding {
    /// out[b, t, :] = word[ids] + position[t] + type[typeIds]; ids are checked by the caller.
    public static func forward(_ out: FPtr, ids: UnsafePointer<Int32>, typeIds: UnsafePointer<Int32>,
                               word: CFPtr, position: CFPtr, type: CFPtr, batch: Int, length: Int, dim: Int) {
        for b in 0..<batch {
            for t in 0..<length {
                let i = b * length + t
                let o = out + i * dim
                let w = word + Int(ids[i]) * dim, p = position + t * dim, ty = type + Int(typeIds[i]) * dim
                for j in 0..<dim { o[j] = w[j] + p[j] + ty[j] }
            }
        }
    }
    /// Scatter-add of dOut into the three tables (any may be nil). The word row of
    /// `paddingId` gets no gradient (PyTorch's `padding_idx`, as Hugging Face builds BERT).
    public static func backward(dWord: FPtr?, dPosition: FPtr?, dType: FPtr?, dOut: CFPtr,
                                ids: UnsafePointer<Int32>, typeIds: UnsafePointer<Int32>,
                                batch: Int, length: Int, dim: Int, paddingId: Int32? = nil) {
        for b in 0..<batch {
            for t in 0..<length {
                let i = b * length + t
                let d = dOut + i * dim
                if let w = dWord, ids[i] != paddingId { let r = w + Int(ids[i]) * dim; for j in 0..<dim { r[j] += d[j] } }
                if let p = dPosition { let r = p + t * dim; for j in 0..<dim { r[j] += d[j] } }
                if let ty = dType { let r = ty + Int(typeIds[i]) * dim; for j in 0..<dim { r[j] += d[j] } }
            }
        }
    }
}

public enum MeanPool {
    /// out[b, :] = mean over t of x[b, t, :]; with `mask`, only positions whose mask is
    /// nonzero count (a sample with none counts all positions).
    public static func forward(_ out: FPtr, _ x: CFPtr, mask: UnsafePointer<Int32>?, batch: Int, length: Int, dim: Int) {
        for b in 0..<batch {
            let o = out + b * dim
            o.update(repeating: 0, count: dim)
            let n = count(mask, b, length)
            for t in 0..<length where included(mask, b, t, length, n) {
                let r = x + (b * length + t) * dim
                for j in 0..<dim { o[j] += r[j] }
            }
            let inv = 1 / Float(n)
            for j in 0..<dim { o[j] *= inv }
        }
    }
    public static func backward(_ dx: FPtr, dOut: CFPtr, mask: UnsafePointer<Int32>?, batch: Int, length: Int, dim: Int) {
        for b in 0..<batch {
            let n = count(mask, b, length)
            let inv = 1 / Float(n)
            let d = dOut + b * dim
            for t in 0..<length {
                let r = dx + (b * length + t) * dim
                if included(mask, b, t, length, n) { for j in 0..<dim { r[j] = d[j] * inv } }
                else { r.update(repeating: 0, count: dim) }
            }
        }
    }
    @inline(__always) static func count(_ mask: UnsafePointer<Int32>?, _ b: Int, _ length: Int) -> Int {
        guard let m = mask else { return length }
        var n = 0
        for t in 0..<length where m[b * length + t] != 0 { n += 1 }
        return n == 0 ? length : n
    }
    @inline(__always) static func included(_ mask: UnsafePointer<Int32>?, _ b: Int, _ t: Int, _ length: Int, _ n: Int) -> Bool {
        guard let m = mask, n != length else { return true }
        return m[b * length + t] != 0
    }
}

public enum GatherRows {
    /// out[b, :] = x[b, pos[b], :]
    public static func forward(_ out: FPtr, _ x: CFPtr, positions: UnsafePointer<Int32>, batch: Int, length: Int, dim: Int) {
        for b in 0..<batch { (out + b * dim).update(from: x + (b * length + Int(positions[b])) * dim, count: dim) }
    }
    /// dx = 0 except dx[b, pos[b], :] = dOut[b, :]
    public static func backward(_ dx: FPtr, dOut: CFPtr, positions: UnsafePointer<Int32>, batch: Int, length: Int, dim: Int) {
        dx.update(repeating: 0, count: batch * length * dim)
        for b in 0..<batch { (dx + (b * length + Int(positions[b])) * dim).update(from: dOut + b * dim, count: dim) }
    }
}

public enum L1Loss {
    /// Σ_b |y_b − t_b| / normalizer (normalizer = the global batch size, so that gradients
    /// summed over ranks and micro-batches are those of the global mean).
    public static func forward(_ y: CFPtr, _ t: CFPtr, batch: Int, normalizer: Int) -> Float {
        var s: Double = 0
        for b in 0..<batch { s += Double(abs(y[b] - t[b])) }
        return Float(s / Double(normalizer))
    }
    /// dy_b = sign(y_b − t_b) / normalizer, sign(0) = 0 as PyTorch.
    public static func backward(_ dy: FPtr, _ y: CFPtr, _ t: CFPtr, batch: Int, normalizer: Int) {
        let inv = 1 / Float(normalizer)
        for b in 0..<batch {
            let d = y[b] - t[b]
            dy[b] = d > 0 ? inv : (d < 0 ? -inv : 0)
        }
    }
}
