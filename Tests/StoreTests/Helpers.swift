import Foundation
import XCTest
@testable import SKESLStore

/// A fresh temporary directory, removed when the test ends.
func tempDir(_ test: XCTestCase, _ name: String = "store") -> String {
    let d = NSTemporaryDirectory() + "skesl-storetests-\(getpid())-\(UUID().uuidString.prefix(8))/\(name)"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: (d as NSString).deletingLastPathComponent) }
    return d
}

let smallSpec = FeatureSpec(audioFrames: 6, audioDim: 4, videoFrames: 3, videoDim: 5, tokens: nil, labeled: true)

/// A synthetic store of `n` samples in shards of `perShard`.
@discardableResult
func makeSynthStore(_ dir: String, n: Int, perShard: Int, spec: FeatureSpec = smallSpec, seed: UInt64 = 7,
                    layout: StoreLayout = .default) throws -> Manifest {
    try writeSynthStore(directory: dir, config: SynthConfig(samples: n, spec: spec, seed: seed),
                        samplesPerShard: perShard, layout: layout)
}

/// The error message `body` throws (fails the test when it does not throw).
func thrownMessage(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do { try body() } catch { return "\(error)" }
    XCTFail("expected an error", file: file, line: line)
    return ""
}

func python() -> String? {
    if let p = ProcessInfo.processInfo.environment["SKESL_VENV_PYTHON"], FileManager.default.isExecutableFile(atPath: p) { return p }
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let p = repo + "/.venv/bin/python"
    return FileManager.default.isExecutableFile(atPath: p) ? p : nil
}

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

@discardableResult
func runProcess(_ exe: String, _ args: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe; p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
