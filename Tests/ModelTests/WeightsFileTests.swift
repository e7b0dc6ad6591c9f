import XCTest
import Foundation
import SKESLHDF5
import SKESLModel

final class WeightsFileTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "skesl-weights-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testRoundTripKeepsEveryTensorAndTheConfig() throws {
        let c = smallConfig(task: .finetune, freeze: false, shared: false, layers: 3)
        let a = try SKESLNetwork(config: c, seed: 1)
        let path = dir + "/w.h5"
        try WeightsFile.save(a, to: path)
        let f = try H5File.open(path)
        XCTAssertEqual(try WeightsFile.config(in: f), c)
        let b = try SKESLNetwork(config: c, seed: 2)
        let h = a.layout.offset("head.fc1.weight"); XCTAssertNotEqual(a.params[h], b.params[h])
        try WeightsFile.read(into: b, from: f)
        for i in 0..<a.layout.count { XCTAssertEqual(a.params[i], b.params[i]) }
        // Names and shapes as PyTorch: Linear weights [out, in].
        XCTAssertEqual(try f.shape("/weights/crossmodal.layers.2.cma_v.k.weight"), [16, 9])
        XCTAssertEqual(try f.shape("/weights/bert.encoder.layer.1.intermediate.dense.weight"), [64, 32])
        XCTAssertEqual(try f.shape("/weights/head.fc2.weight"), [1, 8])
    }

    func testShapeMismatchNamesTheTensor() throws {
        let path = dir + "/w.h5"
        try WeightsFile.save(try SKESLNetwork(config: smallConfig()), to: path)
        var other = smallConfig(); other.crossmodal.attentionDim = 8
        let net = try SKESLNetwork(config: other)
        XCTAssertThrowsError(try WeightsFile.load(into: net, from: path)) { e in
            XCTAssertTrue("\(e)".contains("crossmodal.layers.0.cma_a.q.weight"), "\(e)")
            XCTAssertTrue("\(e)".contains("expects [8, 32]"), "\(e)")
        }
    }

    func testMissingTensorIsAnErrorUnlessKept() throws {
        // A text-only file has no cross-modal tensors.
        let path = dir + "/w.h5"
        try WeightsFile.save(try SKESLNetwork(config: smallConfig(task: .textOnly)), to: path)
        let net = try SKESLNetwork(config: smallConfig(task: .finetune))
        XCTAssertThrowsError(try WeightsFile.load(into: net, from: path)) { e in
            XCTAssertTrue("\(e)".contains("crossmodal.layers.0.cma_a.ln_text.weight is missing"), "\(e)")
        }
        XCTAssertNoThrow(try WeightsFile.load(into: net, from: path, missing: .keep))
    }

    func testCorruptAndMissingFiles() throws {
        let net = try SKESLNetwork(config: smallConfig())
        XCTAssertThrowsError(try WeightsFile.load(into: net, from: dir + "/nope.h5")) { XCTAssertTrue("\($0)".contains("no such file")) }
        let path = dir + "/w.h5"
        try WeightsFile.save(net, to: path)
        // Truncate the file to half its size.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try WeightsFile.load(into: net, from: path)) { e in
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
        try Data("not hdf5 at all".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try WeightsFile.load(into: net, from: path)) { e in
            XCTAssertTrue("\(e)".contains("not a readable HDF5 file"), "\(e)")
        }
    }
}
