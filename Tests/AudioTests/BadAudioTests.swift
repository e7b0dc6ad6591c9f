// Clips that cannot give features are refused with a reason naming the clip
// (the extractor lists, counts and skips them).
import Foundation
import SKESLAudio
import XCTest

final class BadAudioTests: XCTestCase {
    func kind(_ body: () throws -> Any) -> String? {
        do { _ = try body(); return nil } catch let e as FeatureError { return e.kind } catch { return "other: \(error)" }
    }

    func testRefusals() throws {
        let ex = AudioFeatureExtractor()
        XCTAssertEqual(kind { try ex.features([], name: "e") }, "empty")
        XCTAssertEqual(kind { try ex.features([Float](repeating: 0, count: 5000), name: "s") }, "silent")
        var nan = [Float](repeating: 0.1, count: 5000); nan[17] = .nan
        XCTAssertEqual(kind { try ex.features(nan, name: "n") }, "non-finite")
        // librosa's constant-Q transform halves the signal seven times: 65 samples at 22,050 Hz
        // pass (as in librosa 0.9.1), 64 do not.
        XCTAssertEqual(kind { try ex.features((0..<64).map { Float(sin(Double($0))) }, name: "short") }, "too-short")
        XCTAssertNil(kind { try ex.features((0..<65).map { Float(sin(Double($0))) }, name: "ok") })
        XCTAssertEqual(kind { try ex.resampleToTarget([0.5], rate: 48000, name: "one") }, "too-short")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skesl-badaudio-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = dir.appendingPathComponent("junk.wav").path
        try Data("RIFF not really a wave file".utf8).write(to: URL(fileURLWithPath: junk))
        do { _ = try ex.load(junk); XCTFail("junk decoded") } catch let e as FeatureError {
            XCTAssertEqual(e.kind, "unreadable"); XCTAssertTrue(e.description.contains("junk.wav"), e.description)
        }
    }
}

@testable import SKESLAudio

/// The halving path (the constant-Q transform's octave steps) against the general resampy
/// loop, bit for bit, on lengths with no interior, a little, and much interior.
final class ResamplerPathTests: XCTestCase {
    func testHalvingEqualsGeneralLoop() {
        let r = Resampler(from: 2, to: 1, filter: .kaiserFast)
        for n in [2, 3, 5, 33, 64, 65, 100, 127, 1000, 4097] {
            let x = (0..<n).map { Float(sin(Double($0) * 0.37) * 0.5 + cos(Double($0) * 1.9) * 0.25) }
            let m = n / 2
            var a = [Float](repeating: 0, count: m), b = a
            x.withUnsafeBufferPointer { xp in
                a.withUnsafeMutableBufferPointer { r.resampy(xp, into: $0.baseAddress!, count: m) }
                b.withUnsafeMutableBufferPointer { r.halve(xp, into: $0.baseAddress!, count: m) }
            }
            XCTAssertEqual(a, b, "n = \(n)")
        }
    }
}
