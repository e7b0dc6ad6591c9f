// Cluster/slurm.sbatch's first moments, without a cluster. Slurm sends the --signal warning
// at the first 30 s tick that is less than its time plus 30 s before the limit: for a short
// job (`--time=1 --signal=B:USR1@40`) that can be the job's first second, before the script
// has done anything (a stress run of the suite saw the job FAILED with ExitCode 0:10 and no
// output: the shell died of the SIGUSR1 before its `trap` line). The script must take a
// signal from its first command on.
//
// The signal is sent by a shim of the first program the script runs (`rm`), put first on
// PATH: it reaches the shell while the shell waits for that command, at the same point every
// time. `srun` (SKESL_SLURM_LAUNCHER=srun) is a stand-in for the ranks that writes `running`
// to the status file, as rank 0 does, and `completed` when the SIGUSR1 reaches it; `scontrol`
// answers nothing.
import XCTest
import CLISupport
import Foundation

final class SlurmScriptSignalTests: XCTestCase {
    let script = RunHarness.repositoryRoot + "/Cluster/slurm.sbatch"

    /// Runs the batch script outside Slurm with `signal` sent to it by its first command.
    func runScript(signalling signal: String) throws -> (RunResult, dir: String) {
        let dir = NSTemporaryDirectory() + "skesl-sbatch-signal-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let bin = dir + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        func shim(_ name: String, _ body: String) throws {
            try ("#!/bin/sh\n" + body).write(toFile: bin + "/" + name, atomically: true, encoding: .utf8)
            XCTAssertEqual(chmod(bin + "/" + name, 0o755), 0)
        }
        try shim("rm", """
            if [ ! -e '\(dir)/signalled' ]; then : > '\(dir)/signalled'; kill -\(signal) "$PPID"; fi
            exec /bin/rm "$@"

            """)
        try shim("srun", """
            echo "ranks: started"
            trap 'echo "ranks: got SIGUSR1"; echo completed > "$SKESL_STATUS_FILE"; exit 0' USR1
            echo running > "$SKESL_STATUS_FILE"
            i=0
            while [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
            echo "ranks: no SIGUSR1 in 60 s"
            exit 1

            """)
        try shim("scontrol", "exit 1\n")
        let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let r = try LocalSlurm.command("/bin/bash", [script, "pretrain"], environment: [
            "PATH": path, "SKESL_SLURM_LAUNCHER": "srun", "SKESL_BIN": "/bin/true", "SLURM_SUBMIT_DIR": dir,
        ], in: dir)
        return (r, dir)
    }

    /// A SIGUSR1 at the script's first command is held until the ranks report `running`,
    /// then passed on; the run completes. (Before the traps came first, the shell died of it:
    /// exit 138 and no output.)
    func testUSR1AtTheScriptsFirstCommandIsHeldForTheRanks() throws {
        let (r, dir) = try runScript(signalling: "USR1")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = r.out + r.err
        XCTAssertEqual(r.status, 0, log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/signalled"), "the shim sent the signal: \(log)")
        XCTAssertTrue(log.contains("while the ranks are starting: passed on once they can take it"), log)
        XCTAssertTrue(log.contains("the ranks are running: passing on the SIGUSR1"), log)
        XCTAssertTrue(log.contains("ranks: got SIGUSR1"), log)
        XCTAssertTrue(log.contains("run completed"), log)
    }

    /// A SIGTERM (scancel, or a limit) before the ranks start: the script says so and starts none.
    func testTERMBeforeTheRanksStartStartsNone() throws {
        let (r, dir) = try runScript(signalling: "TERM")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = r.out + r.err
        XCTAssertEqual(r.status, 143, log)
        XCTAssertTrue(log.contains("SIGTERM before the ranks started: not starting them"), log)
        XCTAssertFalse(log.contains("ranks: started"), log)
    }
}
