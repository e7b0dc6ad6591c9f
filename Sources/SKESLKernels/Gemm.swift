// Matrix products on OpenBLAS. Everything is row-major; Linear weights are stored
// [out, in] as in PyTorch, so y = x Wᵀ + b is one sgemm with W transposed in place
// (no transposing copies).
import COpenBLAS

public typealias FPtr = UnsafeMutablePointer<Float>
public typealias CFPtr = UnsafePointer<Float>

/// C[M,N] = alpha * op(A) op(B) + beta * C, row-major, with leading dimensions.
@inline(__always)
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: CFPtr, lda: Int, b: CFPtr, ldb: Int,
                  beta: Float = 0, c: FPtr, ldc: Int) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// y[m] = alpha * op(A) x + beta * y, A row-major [m0, n0] with leading dimension lda;
/// op(A) is A (m = m0) or Aᵀ (m = n0). For one-row attention (a single query).
@inline(__always)
public func sgemv(trans: Bool, rows m0: Int, cols n0: Int, alpha: Float = 1, a: CFPtr, lda: Int,
                  x: CFPtr, beta: Float = 0, y: FPtr) {
    if m0 == 0 || n0 == 0 { return }
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, blasint(m0), blasint(n0), alpha, a, blasint(lda),
                x, 1, beta, y, 1)
}

/// A[m, n] += alpha * x yᵀ (row-major, leading dimension lda).
@inline(__always)
public func sger(m: Int, n: Int, alpha: Float = 1, x: CFPtr, y: CFPtr, a: FPtr, lda: Int) {
    if m == 0 || n == 0 { return }
    cblas_sger(CblasRowMajor, blasint(m), blasint(n), alpha, x, 1, y, 1, a, blasint(lda))
}

/// Sets the OpenBLAS thread count (one per rank unless a config says otherwise).
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
public var blasThreads: Int { Int(openblas_get_num_threads()) }
public var blasConfig: String { String(cString: openblas_get_config()) }

public enum Linear {
    /// y[n, out] = x[n, in] · Wᵀ + b.  W is [out, in]; `ldx`/`ldy` allow strided rows.
    public static func forward(_ y: FPtr, _ x: CFPtr, weight w: CFPtr, bias: CFPtr?,
                               rows n: Int, inFeatures: Int, outFeatures: Int,
                               ldx: Int? = nil, ldy: Int? = nil) {
        let ldy = ldy ?? outFeatures
        var beta: Float = 0
        if let b = bias {
            for r in 0..<n { (y + r * ldy).update(from: b, count: outFeatures) }
            beta = 1
        }
        sgemm(transA: false, transB: true, m: n, n: outFeatures, k: inFeatures,
              a: x, lda: ldx ?? inFeatures, b: w, ldb: inFeatures, beta: beta, c: y, ldc: ldy)
    }

    /// Backward of `forward`: dx (=, or += when accumulate) dy·W; dW += dyᵀ·x; db += Σ dy.
    /// Any of dx, dw, db may be nil (frozen inputs or parameters).
    public static func backward(dx: FPtr?, dw: FPtr?, db: FPtr?, dy: CFPtr, x: CFPtr, weight w: CFPtr,
                                rows n: Int, inFeatures: Int, outFeatures: Int,
                                ldx: Int? = nil, ldy: Int? = nil, ldDx: Int? = nil, accumulateDx: Bool = false) {
        let ldy = ldy ?? outFeatures
        if let dx = dx {
            sgemm(transA: false, transB: false, m: n, n: inFeatures, k: outFeatures,
                  a: dy, lda: ldy, b: w, ldb: inFeatures, beta: accumulateDx ? 1 : 0,
                  c: dx, ldc: ldDx ?? inFeatures)
        }
        if let dw = dw {
            sgemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: n,
                  a: dy, lda: ldy, b: x, ldb: ldx ?? inFeatures, beta: 1, c: dw, ldc: inFeatures)
        }
        if let db = db {
            // Columns on the worker team, each summed over the rows in order: the same bits.
            WorkerTeam.shared.forEachChunk(outFeatures, itemSize: n) { cols, _ in
                for r in 0..<n {
                    let row = dy + r * ldy
                    for j in cols { db[j] += row[j] }
                }
            }
        }
    }
}
