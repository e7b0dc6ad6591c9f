// `skesl blas-selftest`, the child process the start-up kernel check runs, with the
// environment's own OpenBLAS core type (tests never change it).
import Foundation
import SKESLReporting
import XCTest
import CLISupport
import SKESLKernels

final class BLASSelfTestCommandTests: XCTestCase {
    func testSelfTestChildReportsTheKernelItChecked() throws {
        let h = try RunHarness("blasselftest")
        let r = try h.run(["blas-selftest", "--rate-seconds", "0.05"])
        XCTAssertEqual(r.status, 0, r.err)
        let line = try XCTUnwrap(r.out.split(separator: "\n").last)
        let got = try JSONDecoder().decode(BLASKernel.SelfTest.self, from: Data(line.utf8))
        XCTAssertTrue(got.passed, String(line))
        XCTAssertEqual(got.shapes, 32)
        // Same environment, same library: the same core type as this test process.
        XCTAssertEqual(got.core, BLASKernel.coreName)
        XCTAssertGreaterThan(try XCTUnwrap(got.gflops), 0.1)
        // Not listed among the commands.
        let help = try h.run(["--help"])
        XCTAssertFalse(help.out.contains("blas-selftest"), help.out)
    }

    /// A computing command restarts itself with OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS reads it
    /// only when it loads), so that its idle threads sleep instead of spinning on the cores
    /// the worker team's loops need; a value the user set is kept.
    func testComputingCommandsStartWithOpenBLASThreadsThatSleep() throws {
        let h = try RunHarness("blastimeout")
        for (env, want) in [([String: String](), "2^4 cycles"), (["OPENBLAS_THREAD_TIMEOUT": "12"], "2^12 cycles")] {
            let r = try h.run(["bench", "--task", "pretrain", "--steps", "1", "--batch", "1", "--threads", "2"], environment: env)
            XCTAssertEqual(r.status, 0, r.err)
            let line = try XCTUnwrap((r.out + r.err).split(separator: "\n").first { $0.hasPrefix("blas: OpenBLAS core") },
                                     "no blas line\n" + r.out + r.err)
            XCTAssertTrue(line.contains(", 2 threads, "), String(line))
            XCTAssertTrue(line.hasSuffix("; idle threads sleep after " + want), "\(env): \(line)")
        }
    }
}
