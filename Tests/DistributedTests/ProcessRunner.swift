// Runs a child process (mpirun, scripts) with a hard timeout: a hung job is
// killed and reported, never left to hang the test run.
import Foundation
import XCTest

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
    var timedOut: Bool
    var summary: String { "exit \(status)\(timedOut ? " (timed out)" : "") after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

enum ProcessRunner {
    static func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                    timeout: Double = 60) throws -> ProcessResult {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skesl-proc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        // The test process may itself be an MPI singleton (tests that initialise MPI in process
        // ran before): its OMPI_/PMIX_ variables would make a child skesl or mpirun believe it
        // runs inside that job (as RunHarness, which drops them too).
        var env = ProcessInfo.processInfo.environment.filter { k, _ in
            !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_", "PRTE_"].contains { k.hasPrefix($0) }
        }
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] ?? "1"
        for (k, v) in extra { env[k] = v }
        p.environment = env
        p.standardOutput = outHandle
        p.standardError = errHandle
        p.standardInput = FileHandle.nullDevice
        let start = Date()
        try p.run()
        var timedOut = false
        while p.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                p.terminate()  // SIGTERM: mpirun then kills its ranks itself
                let grace = Date()
                while p.isRunning && Date().timeIntervalSince(grace) < 5 { usleep(50_000) }
                if p.isRunning { kill(p.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        try? outHandle.close(); try? errHandle.close()
        return ProcessResult(status: p.terminationStatus,
                             stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
                             seconds: Date().timeIntervalSince(start), timedOut: timedOut)
    }

    /// The repository checkout this test file belongs to.
    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The skesl-mpitest executable built next to the test bundle (SwiftPM builds
    /// it because DistributedTests depends on it). SKESL_MPITEST overrides.
    static func mpitestExecutable() throws -> String {
        let fm = FileManager.default
        if let path = ProcessInfo.processInfo.environment["SKESL_MPITEST"] { return path }
        var dirs: [URL] = []
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL
        dirs.append(exe.deletingLastPathComponent())
        dirs.append(Bundle.main.bundleURL)
        dirs.append(Bundle.main.bundleURL.deletingLastPathComponent())
        if let selfExe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: selfExe).deletingLastPathComponent())
        }
        dirs.append(repoRoot.appendingPathComponent(".build/debug"))
        for d in dirs {
            // Inside an .xctest bundle directory (macOS layout), climb out of it.
            var dir = d
            while dir.path.contains(".xctest") { dir = dir.deletingLastPathComponent() }
            let candidate = dir.appendingPathComponent("skesl-mpitest").path
            if fm.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw SetupError("skesl-mpitest is not built next to the tests (looked in \(dirs.map(\.path))); "
            + "build it with `swift build --build-tests` or set SKESL_MPITEST")
    }

    static func mpirun() throws -> String {
        for p in ["/usr/bin/mpirun", "/usr/local/bin/mpirun"] where FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        if let path = ProcessInfo.processInfo.environment["PATH"] {
            for d in path.split(separator: ":") {
                let p = "\(d)/mpirun"
                if FileManager.default.isExecutableFile(atPath: p) { return p }
            }
        }
        throw SetupError("mpirun not found: install openmpi-bin (scripts/setup does)")
    }
}

struct SetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
