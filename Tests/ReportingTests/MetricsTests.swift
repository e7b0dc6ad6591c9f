// RegressionMetrics against numpy / scikit-learn, on the cases written by
// scripts/make_metric_fixtures.py (MMSA's MOSI/MOSEI conventions).
import Foundation
import XCTest
@testable import SKESLReporting

final class MetricsTests: XCTestCase {
    struct Fixture: Decodable {
        let name: String
        let predictions: [Double]
        let labels: [Double]
        let expected: [String: Double?]
    }

    static let fixtureDir = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/metrics")

    func loadFixtures() throws -> [Fixture] {
        let files = try FileManager.default.contentsOfDirectory(at: Self.fixtureDir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
        XCTAssertGreaterThanOrEqual(files.count, 8, "fixtures missing: run scripts/make_metric_fixtures.py")
        return try files.map { try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: $0)) }
    }

    func testMatchesNumpyAndSklearnOnEveryFixture() throws {
        for f in try loadFixtures() {
            let m = try RegressionMetrics.compute(predictions: f.predictions.map { Float($0) },
                                                  labels: f.labels.map { Float($0) })
            let got: [String: Double] = Dictionary(uniqueKeysWithValues: m.namedValues.map { ($0.key, $0.value) })
            for (key, value) in got {
                guard let entry = f.expected[key] else { XCTFail("\(f.name): fixture lacks \(key)"); continue }
                if let want = entry {
                    XCTAssertEqual(value, want, accuracy: 1e-6, "\(f.name): \(key)")
                } else {
                    XCTAssertTrue(value.isNaN, "\(f.name): \(key) should be undefined (NaN), got \(value)")
                }
            }
            XCTAssertEqual(Double(m.count), f.expected["n"]!!, "\(f.name): n")
            XCTAssertEqual(Double(m.countNon0), f.expected["n_non0"]!!, "\(f.name): n_non0")
        }
    }

    func testRoundHalfToEvenLikeNumpy() throws {
        // 2.5 -> 2 and -0.5 -> 0 under numpy; rounding half away from zero would miss both.
        let m = try RegressionMetrics.compute(predictions: [2.5, -0.5, 0.5, -2.5], labels: [2, 0, 0, -2])
        XCTAssertEqual(m.acc7, 1)
        XCTAssertEqual(m.acc5, 1)
    }

    func testNon0CountsZeroPredictionAsNegativeAndSkipsZeroLabels() throws {
        // Label 0 rows are dropped from non-0; a prediction of exactly 0 is "negative" there
        // but "non-negative" in has-0.
        let m = try RegressionMetrics.compute(predictions: [0, 0, 1], labels: [1, 0, 2])
        XCTAssertEqual(m.countNon0, 2)
        XCTAssertEqual(m.acc2Non0, 0.5)
        XCTAssertEqual(m.acc2Has0, 1)
    }

    func testJSONRoundTripKeepsUndefinedFiguresAsNull() throws {
        let m = try RegressionMetrics.compute(predictions: [0.1, 0.2, 0.3], labels: [0, 0, 0])
        XCTAssertTrue(m.corr.isNaN)
        XCTAssertTrue(m.acc2Non0.isNaN)
        let json = m.jsonString()
        XCTAssertTrue(json.contains("\"corr\":null"), json)
        XCTAssertTrue(json.contains("\"acc2_non0\":null"), json)
        let back = try JSONDecoder().decode(RegressionMetrics.self, from: Data(json.utf8))
        XCTAssertEqual(back, m)
    }

    func testTerminalTableShowsEveryFigure() throws {
        let v = try RegressionMetrics.compute(predictions: [0.5, -1, 2, 0], labels: [1, -1, 1.8, 0.2])
        let t = try RegressionMetrics.compute(predictions: [1, 1, -2], labels: [0.6, -0.4, -2.2])
        let table = MetricsTable.render([("valid", v), ("test", t)])
        let lines = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 11)
        XCTAssertTrue(lines[0].hasPrefix("metric") && lines[0].hasSuffix("test"), lines[0])
        XCTAssertTrue(lines[1].contains(String(format: "%.4f", v.mae)) && lines[1].contains(String(format: "%.4f", t.mae)))
        XCTAssertTrue(lines[7].hasPrefix("Acc-7"))
        XCTAssertTrue(lines[9].hasSuffix(" 3"), lines[9])
        // Columns line up: every line has the same width.
        XCTAssertEqual(Set(lines.map(\.count)).count, 1, table)
        XCTAssertEqual("\(v)", v.table())
        XCTAssertTrue(v.table().hasPrefix("metric          value\nMAE            0.2250"), v.table())
    }

    func testBadInputIsNamed() {
        XCTAssertThrowsError(try RegressionMetrics.compute(predictions: [1, 2], labels: [1])) {
            XCTAssertTrue("\($0)".contains("2 predictions but 1 labels"))
        }
        XCTAssertThrowsError(try RegressionMetrics.compute(predictions: [], labels: []))
        XCTAssertThrowsError(try RegressionMetrics.compute(predictions: [1, .nan], labels: [1, 1])) {
            XCTAssertTrue("\($0)".contains("prediction of sample 1 is nan"), "\($0)")
        }
    }
}
