// Locating the committed text fixtures (relative to this file) and scratch directories,
// for TextTests and HuggingFaceTests.
import Foundation
import XCTest

public enum Fixtures {
    public static let textDir: String = {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return here.deletingLastPathComponent().appendingPathComponent("Fixtures/text").path
    }()
    public static func path(_ name: String) -> String { (textDir as NSString).appendingPathComponent(name) }

    public static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    public static func json(_ name: String) throws -> Any {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path(name)), "missing fixture \(name)")
        return try JSONSerialization.jsonObject(with: data)
    }

    /// A fresh temporary directory, removed by the caller's tearDown or left in /tmp.
    public static func tempDir(_ tag: String) throws -> String {
        let d = (NSTemporaryDirectory() as NSString).appendingPathComponent("skesl-text-\(tag)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}
