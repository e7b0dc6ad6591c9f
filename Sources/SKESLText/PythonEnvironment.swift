// Finding the project's Python venv and the packages setup installs into it
// (vaderSentiment's lexicon, the MiniLM weights), without running Python when the
// usual layout is there.
import Foundation

public enum PythonEnvironment {
    /// The venv python: $SKESL_VENV_PYTHON, else `<root>/.venv/bin/python` for the given
    /// root, the current directory, or the checkout that holds this executable.
    public static func venvPython(repoRoot: String? = nil) -> String? {
        if let p = ProcessInfo.processInfo.environment["SKESL_VENV_PYTHON"], FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        for root in candidateRoots(repoRoot) {
            let p = (root as NSString).appendingPathComponent(".venv/bin/python")
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    static func candidateRoots(_ given: String?) -> [String] {
        var roots: [String] = []
        if let g = given { roots.append(g) }
        roots.append(FileManager.default.currentDirectoryPath)
        // .build/<config>/skesl or .build/<triple>/<config>/skesl: walk up to the checkout.
        // The executable's real path (argv[0] is a bare name when it was found on PATH).
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments.first ?? ""
        var d = URL(fileURLWithPath: exe).standardizedFileURL.deletingLastPathComponent()
        for _ in 0..<4 {
            d = d.deletingLastPathComponent()
            roots.append(d.path)
        }
        return roots
    }

    /// The directory of an installed Python package (its import name).
    public static func packageDirectory(_ name: String, repoRoot: String? = nil) -> String? {
        let fm = FileManager.default
        if let python = venvPython(repoRoot: repoRoot) {
            // <venv>/bin/python -> <venv>/lib/python3*/site-packages/<name>
            let venv = ((python as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            let lib = (venv as NSString).appendingPathComponent("lib")
            for v in ((try? fm.contentsOfDirectory(atPath: lib)) ?? []).sorted() where v.hasPrefix("python3") {
                let p = "\(lib)/\(v)/site-packages/\(name)"
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue { return p }
            }
            // Another layout: ask the interpreter (find_spec does not import the package).
            let code = "import importlib.util as u; s = u.find_spec('\(name)'); print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"
            if let out = run(python, ["-c", code]), !out.isEmpty, fm.fileExists(atPath: out) { return out }
        }
        return nil
    }

    /// Runs a program, returns its trimmed standard output when it exits 0.
    public static func run(_ program: String, _ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
