// The start-up decision about OpenBLAS's kernel (a pure function of the CPU's flags, the
// core type OpenBLAS chose and the environment) and the sgemm self-test.
import XCTest
import SKESLKernels

final class BLASKernelTests: XCTestCase {
    // Flags as /proc/cpuinfo lists them.
    let sapphireRapids: Set<String> = ["pni", "ssse3", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw",
                                       "avx512dq", "avx512vl", "avx512_bf16", "amx_tile", "amx_bf16"]
    let skylake: Set<String> = ["pni", "ssse3", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
    let haswell: Set<String> = ["pni", "ssse3", "sse4_2", "avx", "avx2", "fma"]

    func testFallbackOnANewerCPUTriesTheBestCoreTypesFirst() {
        XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: "Prescott", environment: [:]),
                       .tryCores(["SapphireRapids", "Cooperlake", "SkylakeX", "Haswell", "Sandybridge", "Nehalem", "Core2"]))
        XCTAssertEqual(BLASKernel.decide(flags: skylake, chosen: "Nehalem", environment: ["PATH": "/bin"]),
                       .tryCores(["SkylakeX", "Haswell", "Sandybridge"]))
        XCTAssertEqual(BLASKernel.decide(flags: haswell, chosen: "Core2", environment: [:]),
                       .tryCores(["Haswell", "Sandybridge", "Nehalem"]))
        // A core type OpenBLAS only knows under another name counts at its level.
        XCTAssertEqual(BLASKernel.decide(flags: haswell, chosen: "Penryn", environment: [:]),
                       .tryCores(["Haswell", "Sandybridge", "Nehalem"]))
        // A flag missing (no FMA): Haswell is not offered.
        XCTAssertEqual(BLASKernel.decide(flags: haswell.subtracting(["fma"]), chosen: "Prescott", environment: [:]),
                       .tryCores(["Sandybridge", "Nehalem", "Core2"]))
    }

    func testTheUserAndOpenBLASsOwnChoicesAreKept() {
        // The user's core type is never second-guessed, even a poor one.
        XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: "Prescott", environment: ["OPENBLAS_CORETYPE": "Prescott"]),
                       .keep("set by OPENBLAS_CORETYPE=Prescott"))
        XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: "Haswell", environment: ["OPENBLAS_CORETYPE": "Haswell"]),
                       .keep("set by OPENBLAS_CORETYPE=Haswell"))
        // Already re-executed with a self-tested core type: no second round.
        XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: "Cooperlake",
                                         environment: ["OPENBLAS_CORETYPE": "Cooperlake", "SKESL_BLAS_SELECTED": "Cooperlake"]),
                       .keep("selected by skesl after its self-test"))
        // Switched off.
        XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: "Prescott", environment: ["SKESL_BLAS_AUTOSELECT": "0"]),
                       .keep("chosen by OpenBLAS (SKESL_BLAS_AUTOSELECT=0)"))
        // Not a fallback: OpenBLAS's deliberate choices (Haswell kernels on Zen, Cooperlake on an AVX-512 EPYC).
        for c in ["Haswell", "Zen", "SkylakeX", "Cooperlake", "Sandybridge"] {
            XCTAssertEqual(BLASKernel.decide(flags: sapphireRapids, chosen: c, environment: [:]), .keep("chosen by OpenBLAS"), c)
        }
        // A fallback that is the best the flags allow.
        XCTAssertEqual(BLASKernel.decide(flags: ["pni"], chosen: "Prescott", environment: [:]),
                       .keep("chosen by OpenBLAS (the CPU's flags allow nothing better)"))
        XCTAssertEqual(BLASKernel.decide(flags: [], chosen: "Prescott", environment: [:]),
                       .keep("chosen by OpenBLAS (the CPU's flags allow nothing better)"))
    }

    func testCPUFlagsAreReadFromCpuinfo() throws {
        let p = NSTemporaryDirectory() + "cpuinfo-\(getpid())"
        try "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pni avx2 fma avx512f\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n"
            .write(toFile: p, atomically: true, encoding: .utf8)
        defer { unlink(p) }
        XCTAssertEqual(BLASKernel.cpuFlags(cpuinfo: p), ["fpu", "pni", "avx2", "fma", "avx512f"])
        XCTAssertEqual(BLASKernel.cpuFlags(cpuinfo: "/nonexistent"), [])
    }

    func testSelfTestPassesOpenBLASAndCatchesWrongProducts() {
        let ok = BLASKernel.selfTest()
        XCTAssertTrue(ok.passed, "OpenBLAS \(ok.core): error \(ok.worstErrorRatio) of the bound")
        XCTAssertEqual(ok.shapes, 32)
        XCTAssertEqual(ok.core, BLASKernel.coreName)
        XCTAssertLessThan(ok.worstErrorRatio, 0.5)
        // A product that drops the last term of each dot product (a kernel's remainder loop gone wrong).
        let dropsTail = BLASKernel.selfTest { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            sgemm(transA: tA, transB: tB, m: m, n: n, k: max(k - 1, 0), alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: c, ldc: ldc)
        }
        XCTAssertFalse(dropsTail.passed)
        // One that ignores beta.
        let noBeta = BLASKernel.selfTest { tA, tB, m, n, k, alpha, a, lda, b, ldb, _, c, ldc in
            sgemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: ldc)
        }
        XCTAssertFalse(noBeta.passed)
        // One that is right but writes past the row into C's padding.
        let spills = BLASKernel.selfTest { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            sgemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            c[n] = 0
        }
        XCTAssertFalse(spills.passed)
        // Half a float's precision lost on one element.
        let sloppy = BLASKernel.selfTest { tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc in
            sgemm(transA: tA, transB: tB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            if m * n > 1 { c[ldc + 1] *= 1 + 1e-3 }
        }
        XCTAssertFalse(sloppy.passed)
    }
}
