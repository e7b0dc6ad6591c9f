// Start-up choice of the OpenBLAS kernel (SKESLKernels/BLASKernel.swift has the why) and
// the hidden `skesl blas-selftest` that checks a core type in a child process.
import ArgumentParser
import Foundation
import SKESLReporting
import SKESLKernels
import SKESLLog

struct BLASSelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blas-selftest", abstract: "Check OpenBLAS's sgemm against a plain reference; print one JSON line.",
        discussion: "Run by skesl itself at start-up with OPENBLAS_CORETYPE set to the core type under test; exit 0 when it passes.",
        shouldDisplay: false)
    @Option(help: "Seconds to measure the sgemm rate (0: do not measure).") var rateSeconds = 0.3
    func run() throws {
        setBLASThreads(1)
        var r = BLASKernel.selfTest()
        if r.passed && rateSeconds > 0 { r.gflops = BLASKernel.sgemmRate(seconds: rateSeconds) }
        let enc = JSONEncoder(); enc.outputFormatting = .sortedKeys
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        print(String(decoding: try enc.encode(r), as: UTF8.self))
        if !r.passed { throw ExitCode(1) }
    }
}

enum BLASSelect {
    /// Subcommands that compute: the kernel matters there (others start without the check).
    static let computing: Set<String> = ["pretrain", "finetune", "bench", "evaluate", "predict"]

    static func note(_ m: String) { Log.note(m) }

    /// Runs `skesl blas-selftest` with OPENBLAS_CORETYPE=core; its verdict (nil: crashed, hung or failed).
    static func childSelfTest(core: String, timeout: Double = 120) -> BLASKernel.SelfTest? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        p.arguments = ["blas-selftest"]
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = core
        env["OPENBLAS_NUM_THREADS"] = "1"
        // Not an MPI process: keep the launcher's variables away from it.
        for k in env.keys where ["OMPI_", "PMIX_", "PMI_"].contains(where: k.hasPrefix) { env[k] = nil }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { note("cannot run the BLAS self-test (\(error))"); return nil }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); note("OpenBLAS core \(core): self-test hung; skipped"); return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        guard p.terminationReason == .exit else { note("OpenBLAS core \(core): self-test crashed (signal \(p.terminationStatus)); skipped"); return nil }
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        guard let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let r = try? dec.decode(BLASKernel.SelfTest.self, from: Data(line.utf8)) else { return nil }
        return r
    }

    /// Called first thing in main: may re-execute this process with a better OPENBLAS_CORETYPE,
    /// or with OpenBLAS's idle threads sleeping (`BLASKernel.threadTimeout`).
    static func atStartup(arguments: [String]) {
        guard arguments.count > 1, computing.contains(arguments[1]), !arguments.contains("--help"), !arguments.contains("-h") else { return }
        // OpenBLAS reads its thread timeout once, when it loads: set it, then restart below.
        var restart = false
        if ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"] == nil {
            setenv("OPENBLAS_THREAD_TIMEOUT", String(BLASKernel.threadTimeout), 1)
            restart = true
        }
        chooseCore()
        if restart { reexecute(orContinueWith: "OpenBLAS's default thread timeout") }
    }

    static func reexecute(orContinueWith what: String) {
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        note("cannot re-execute (\(String(cString: strerror(errno)))); continuing with \(what)")
    }

    /// Where OpenBLAS fell back to an old core type: self-tests better ones and re-executes
    /// with the first that passes.
    static func chooseCore() {
        let env = ProcessInfo.processInfo.environment
        // SKESL_BLAS_TEST_CHOSEN=<core> pretends OpenBLAS chose <core>: a drill of this path on a
        // CPU that OpenBLAS knows (docs/performance.md shows one).
        let chosen = env["SKESL_BLAS_TEST_CHOSEN"].flatMap { $0.isEmpty ? nil : $0 } ?? BLASKernel.coreName
        // Only rank 0 of an MPI job (or a lone process) speaks; every rank decides the same.
        let quiet = (env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? "0") != "0"
        guard case .tryCores(let cores) = BLASKernel.decide(flags: BLASKernel.cpuFlags(), chosen: chosen, environment: env) else { return }
        if !quiet { note("OpenBLAS chose its fallback core type \(chosen) on a CPU that supports more; self-testing \(cores.joined(separator: ", "))") }
        for core in cores {
            guard let r = childSelfTest(core: core) else { continue }
            if r.core != core {
                if !quiet { note("OpenBLAS core \(core): this OpenBLAS does not have it (it ran \(r.core)); skipped") }
                continue
            }
            guard r.passed else {
                if !quiet { note(String(format: "OpenBLAS core %@: wrong sgemm results (error %.3g times the bound); skipped", core, r.worstErrorRatio)) }
                continue
            }
            if !quiet { note(String(format: "OpenBLAS core %@ passed the sgemm self-test (%.1f GFLOP/s); restarting with OPENBLAS_CORETYPE=%@", core, r.gflops ?? .nan, core)) }
            setenv("OPENBLAS_CORETYPE", core, 1)
            setenv("SKESL_BLAS_SELECTED", core, 1)
            setenv("SKESL_BLAS_DETECTED", chosen, 1)
            reexecute(orContinueWith: chosen)
            return
        }
        if !quiet { note("no better OpenBLAS core type passed the self-test; continuing with \(chosen)") }
    }
}
