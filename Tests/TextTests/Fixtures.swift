// Locating the committed fixtures (relative to this file) and scratch directories.
import Foundation
import XCTest

enum Fixtures {
    static let textDir: String = {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return here.deletingLastPathComponent().appendingPathComponent("Fixtures/text").path
    }()
    static func path(_ name: String) -> String { (textDir as NSString).appendingPathComponent(name) }

    static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    static func json(_ name: String) throws -> Any {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path(name)), "missing fixture \(name)")
        return try JSONSerialization.jsonObject(with: data)
    }

    /// A fresh temporary directory, removed by the caller's tearDown or left in /tmp.
    static func tempDir(_ tag: String) throws -> String {
        let d = (NSTemporaryDirectory() as NSString).appendingPathComponent("skesl-text-\(tag)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}
