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
}
