// SKESLLog: the level threshold, the words and prefixes each call adds, and whole lines
// from many threads (each write is one line, never interleaved). Reads what Log writes by
// pointing file descriptor 2 at a file for the duration of one check.
import Foundation
import SKESLLog
import XCTest

final class LogTests: XCTestCase {
    /// What `body` writes to stderr.
    func captured(_ body: () -> Void) throws -> String {
        let path = NSTemporaryDirectory() + "skesl-log-\(getpid())-\(UUID().uuidString)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let saved = dup(2)
        dup2(fd, 2); close(fd)
        body()
        dup2(saved, 2); close(saved)
        defer { unlink(path) }
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    func testLevelsWordsAndPrefixes() throws {
        let before = Log.level
        defer { Log.level = before }
        Log.level = .info
        let all = try captured {
            Log.debug("hidden"); Log.info("narrative"); Log.warning("careful"); Log.error("broken")
            Log.rank(3, "my own"); Log.note("process"); Log.raw("\rstatus")
        }
        XCTAssertEqual(all, "narrative\nwarning: careful\nerror: broken\nrank 3: my own\nskesl: process\n\rstatus")
        Log.level = .warning
        let quiet = try captured { Log.info("narrative"); Log.raw("status"); Log.rank(1, "late", level: .warning); Log.error("x") }
        XCTAssertEqual(quiet, "rank 1: late\nerror: x\n")
        Log.level = .debug
        XCTAssertEqual(try captured { Log.debug("detail") }, "debug: detail\n")
    }

    func testLinesFromManyThreadsStayWhole() throws {
        let out = try captured {
            DispatchQueue.concurrentPerform(iterations: 8) { t in
                for i in 0..<200 { Log.rank(t, String(repeating: "x", count: 50 + i % 7) + " end") }
            }
        }
        let lines = out.split(separator: "\n")
        XCTAssertEqual(lines.count, 1600)
        for l in lines { XCTAssertTrue(l.hasPrefix("rank ") && l.hasSuffix(" end"), String(l)) }
    }
}
