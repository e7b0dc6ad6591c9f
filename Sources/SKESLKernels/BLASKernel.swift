// Which OpenBLAS kernel runs, and choosing a better one when OpenBLAS falls back.
//
// A DYNAMIC_ARCH OpenBLAS picks its kernels from the CPU model at load time. An OpenBLAS
// older than the CPU does not know the model and falls back to an old core type
// (Debian 12's 0.3.21 runs Prescott SSE3 kernels on Sapphire Rapids Xeons: a third of the
// Haswell speed). The CPU's flags say what it can run, so at start-up skesl:
//   1. leaves everything alone when the user set OPENBLAS_CORETYPE, or set
//      SKESL_BLAS_AUTOSELECT=0, or OpenBLAS chose a core type that is not a fallback;
//   2. otherwise tries the core types the flags allow, best first: each in a child process
//      (`skesl blas-selftest`, so a kernel that crashes on this CPU cannot take the run
//      down) that checks sgemm against a plain reference on odd shapes;
//   3. re-executes itself with the first one that passes, OPENBLAS_CORETYPE set (the
//      variable is read when the library loads, so it cannot change in-process).
// docs/performance.md, "The BLAS kernel", has the figures.
import COpenBLAS
import Foundation

public enum BLASKernel {
    /// Core types OpenBLAS accepts in OPENBLAS_CORETYPE, weakest to strongest, with the
    /// /proc/cpuinfo flags each needs ("pni" is SSE3).
    public static let ladder: [(core: String, needs: [String])] = [
        ("Prescott", ["pni"]),
        ("Core2", ["pni", "ssse3"]),
        ("Nehalem", ["pni", "ssse3", "sse4_2"]),
        ("Sandybridge", ["avx"]),
        ("Haswell", ["avx", "avx2", "fma"]),
        ("SkylakeX", ["avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]),
        ("Cooperlake", ["avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"]),
        ("SapphireRapids", ["avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "amx_tile", "amx_bf16"]),
    ]

    /// Core types OpenBLAS uses when it does not recognise the CPU (or for old ones), with the
    /// ladder level they equal. A core type not in this table (Haswell, Zen, SkylakeX, ...) is
    /// OpenBLAS's deliberate choice and is kept.
    public static let fallbacks: [String: Int] = [
        "Katmai": -1, "Coppermine": -1, "Northwood": -1, "Banias": -1, "Generic": -1, "Unknown": -1,
        "Prescott": 0, "Opteron(SSE3)": 0, "Opteron": -1, "Barcelona": 0, "Nano": 0,
        "Core2": 1, "Penryn": 1, "Dunnington": 1, "Atom": 1,
        "Nehalem": 2,
    ]

    public enum Action: Equatable, Sendable {
        /// Keep the kernel OpenBLAS runs; the reason is printed.
        case keep(String)
        /// Self-test these core types, best first; re-execute with the first that passes.
        case tryCores([String])
    }

    /// The start-up decision, from the CPU's flags, the core type OpenBLAS chose and the environment.
    public static func decide(flags: Set<String>, chosen: String, environment env: [String: String]) -> Action {
        if let sel = env["SKESL_BLAS_SELECTED"], !sel.isEmpty { return .keep("selected by skesl after its self-test") }
        if let user = env["OPENBLAS_CORETYPE"], !user.isEmpty { return .keep("set by OPENBLAS_CORETYPE=\(user)") }
        if env["SKESL_BLAS_AUTOSELECT"] == "0" { return .keep("chosen by OpenBLAS (SKESL_BLAS_AUTOSELECT=0)") }
        guard let level = fallbacks[chosen] else { return .keep("chosen by OpenBLAS") }
        let better = ladder.enumerated().filter { i, e in i > level && e.needs.allSatisfy(flags.contains) }.map(\.element.core)
        if better.isEmpty { return .keep("chosen by OpenBLAS (the CPU's flags allow nothing better)") }
        return .tryCores(better.reversed())
    }

    /// OPENBLAS_THREAD_TIMEOUT that skesl starts with unless it is set (2^n cycles that an
    /// idle OpenBLAS thread spins before it sleeps; OpenBLAS's default is 28, about 0.1 s).
    /// With train.threads > 1 the worker team's loops run between the products on the same
    /// cores, and threads spinning there took them: a pretraining step's own loops ran 1.84x
    /// faster on 2 threads with 4 (the least OpenBLAS takes), 1.09x with the default.
    public static let threadTimeout = 4

    /// How long OpenBLAS's idle threads spin in this process, as OpenBLAS read it at load.
    public static var threadTimeoutInEffect: String {
        let v = Int(skesl_openblas_thread_timeout())
        if v < 0 { return "an unknown time (this OpenBLAS does not say)" }
        if v == 0 { return "2^28 cycles (OpenBLAS's default)" }
        return "2^\(min(max(v, 4), 30)) cycles"
    }

    /// The core type OpenBLAS runs in this process.
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// The first CPU's flags from /proc/cpuinfo (empty where there is none).
    public static func cpuFlags(cpuinfo: String = "/proc/cpuinfo") -> Set<String> {
        guard let text = try? String(contentsOfFile: cpuinfo, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// How the kernel of this process came to be (for run headers and logs).
    public static func source(environment env: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let sel = env["SKESL_BLAS_SELECTED"], !sel.isEmpty {
            return "selected by skesl after its sgemm self-test; OpenBLAS alone chose \(env["SKESL_BLAS_DETECTED"] ?? "?")"
        }
        if let user = env["OPENBLAS_CORETYPE"], !user.isEmpty { return "set by OPENBLAS_CORETYPE=\(user)" }
        return "chosen by OpenBLAS"
    }

    // MARK: the self-test

    public struct SelfTest: Codable, Sendable {
        public var core: String
        public var passed: Bool
        /// Largest |C − reference| over the error bound of its element (passes when ≤ 1).
        public var worstErrorRatio: Double
        public var shapes: Int
        /// sgemm at 1248x3072x768 (one BERT-base feed-forward product), GFLOP/s, when measured.
        public var gflops: Double?
    }

    /// sgemm on odd shapes (every transpose, padded leading dimensions, alpha and beta not
    /// 0 or 1) against a plain Double reference. `product` is the routine under test
    /// (replaceable so the checker itself can be tested against a wrong product).
    public static func selfTest(product: (_ tA: Bool, _ tB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                                          _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                          _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Void
                                = { sgemm(transA: $0, transB: $1, m: $2, n: $3, k: $4, alpha: $5, a: $6, lda: $7, b: $8, ldb: $9, beta: $10, c: $11, ldc: $12) })
        -> SelfTest {
        let shapes = [(1, 1, 1), (3, 5, 7), (17, 31, 9), (33, 65, 129), (67, 19, 300), (129, 97, 61), (250, 301, 37), (16, 768, 384)]
        var worst = 0.0, count = 0
        for (si, (m, n, k)) in shapes.enumerated() {
            for tA in [false, true] {
                for tB in [false, true] {
                    let rowsA = tA ? k : m, colsA = tA ? m : k, rowsB = tB ? n : k, colsB = tB ? k : n
                    let lda = colsA + 3, ldb = colsB + 1, ldc = n + 2
                    var a = [Float](repeating: .nan, count: rowsA * lda)    // padding stays NaN: reading it shows
                    var b = [Float](repeating: .nan, count: rowsB * ldb)
                    var c = [Float](repeating: .nan, count: m * ldc)
                    let seed = UInt64(si * 4 + (tA ? 2 : 0) + (tB ? 1 : 0))
                    let r = KeyedRandom(seed: seed, stream: "blas-selftest")
                    var draw = 0
                    func next() -> Float { draw += 1; return 2 * r.uniform(draw) - 1 }
                    for i in 0..<rowsA { for j in 0..<colsA { a[i * lda + j] = next() } }
                    for i in 0..<rowsB { for j in 0..<colsB { b[i * ldb + j] = next() } }
                    for i in 0..<m { for j in 0..<n { c[i * ldc + j] = next() } }
                    let c0 = c
                    let alpha: Float = 0.75, beta: Float = -0.5
                    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                        product(tA, tB, m, n, k, alpha, pa.baseAddress!, lda, pb.baseAddress!, ldb, beta, pc.baseAddress!, ldc)
                    } } }
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, mag = 0.0
                            for p in 0..<k {
                                let x = Double(tA ? a[p * lda + i] : a[i * lda + p]), y = Double(tB ? b[j * ldb + p] : b[p * ldb + j])
                                s += x * y; mag += abs(x * y)
                            }
                            let ref = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                            // Float accumulation over k terms: a few k·ε of the magnitudes summed.
                            let bound = 4 * Double(k + 2) * Double(Float.ulpOfOne) * (Double(abs(alpha)) * mag + Double(abs(beta * c0[i * ldc + j]))) + 1e-30
                            let got = Double(c[i * ldc + j])
                            let ratio = got.isFinite ? abs(got - ref) / bound : .infinity
                            worst = max(worst, ratio)
                        }
                    }
                    // The padding of C must not be written.
                    for i in 0..<m { for j in n..<ldc where !c[i * ldc + j].isNaN { worst = .infinity } }
                    count += 1
                }
            }
        }
        return SelfTest(core: coreName, passed: worst <= 1, worstErrorRatio: worst, shapes: count, gflops: nil)
    }

    /// This process's sgemm rate at 1248x3072x768 (a BERT-base feed-forward product), GFLOP/s.
    public static func sgemmRate(m: Int = 1248, n: Int = 3072, k: Int = 768, seconds: Double = 1.0) -> Double {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        KeyedRandom(seed: 1, stream: "a").fillUniform(a, m * k, lo: -1, hi: 1)
        KeyedRandom(seed: 1, stream: "b").fillUniform(b, k * n, lo: -1, hi: 1)
        sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: c, ldc: n)
        var reps = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        var el = 0.0
        repeat {
            sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: c, ldc: n)
            reps += 1
            el = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        } while el < seconds
        return 2 * Double(m * n * k) * Double(reps) / el / 1e9
    }
}

/// The kernel in use, for a run's header, `skesl bench` and the metrics log's run_start.
public struct BLASReport: Codable, Equatable, Sendable {
    public var core: String
    public var source: String
    public var config: String
    public var threads: Int
    public var sgemmGFLOPs: Double

    enum CodingKeys: String, CodingKey { case core, source, config, threads, sgemmGFLOPs = "sgemm_gflops" }

    /// Measures the sgemm rate for `seconds` (with the current thread count).
    public static func measure(seconds: Double) -> BLASReport {
        BLASReport(core: BLASKernel.coreName, source: BLASKernel.source(), config: blasConfig, threads: blasThreads,
                   sgemmGFLOPs: BLASKernel.sgemmRate(seconds: seconds))
    }

    public var line: String {
        String(format: "blas: OpenBLAS core %@ (%@), %d thread%@, sgemm 1248x3072x768 %.1f GFLOP/s",
               core, source, threads, threads == 1 ? "" : "s", sgemmGFLOPs)
            + (threads == 1 ? "" : "; idle threads sleep after " + BLASKernel.threadTimeoutInEffect)
    }
}
