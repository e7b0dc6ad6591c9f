// A flat Codable value as attributes of an HDF5 object: a round trip of every field type,
// the attribute names the coding keys give (what h5py and h5dump show), and clear errors
// for a missing attribute and for a field type attributes cannot hold.
import Foundation
import SKESLHDF5
import XCTest

final class H5AttributesTests: XCTestCase {
    struct State: Codable, Equatable {
        var step = 0, seed: UInt64 = 0, loss = 0.0, name = "", note: String? = nil
        enum CodingKeys: String, CodingKey { case step, seed, loss = "best_loss", name, note }
    }

    func path(_ tag: String) -> String {
        NSTemporaryDirectory() + "/skesl-h5attr-\(tag)-\(getpid())-\(UUID().uuidString).h5"
    }

    func testRoundTripUnderTheCodingKeysNames() throws {
        let p = path("roundtrip"); defer { unlink(p) }
        let v = State(step: -3, seed: .max, loss: .infinity, name: "störe ✓", note: nil)
        let f = try H5File.create(p)
        try H5Attributes.write(v, to: f)
        try f.close()
        let g = try H5File.open(p)
        XCTAssertEqual(try H5Attributes.read(State.self, from: g), v)
        // Each field is its own attribute, under the coding key's name and natural type.
        XCTAssertEqual(try g.attribute("step", as: Int64.self), -3)
        XCTAssertEqual(try g.attribute("seed", as: UInt64.self), .max)
        XCTAssertEqual(try g.attribute("best_loss", as: Double.self), .infinity)
        XCTAssertEqual(try g.stringAttribute("name"), "störe ✓")
        XCTAssertFalse(g.hasAttribute("note"), "a nil optional is left out")
        XCTAssertFalse(g.hasAttribute("loss"))
        var w = v; w.note = "kept"
        let p2 = path("optional"); defer { unlink(p2) }
        let f2 = try H5File.create(p2); try H5Attributes.write(w, to: f2); try f2.close()
        XCTAssertEqual(try H5Attributes.read(State.self, from: try H5File.open(p2)), w)
    }

    func testAMissingAttributeIsNamed() throws {
        let p = path("missing"); defer { unlink(p) }
        let f = try H5File.create(p)
        try f.setAttribute("step", Int64(1))
        try f.close()
        XCTAssertThrowsError(try H5Attributes.read(State.self, from: try H5File.open(p))) { e in
            XCTAssertTrue("\(e)".contains("\(p): attribute seed is missing on /"), "\(e)")
        }
    }

    func testAFieldAttributesCannotHoldIsRefused() throws {
        struct Nested: Codable { var xs = [1, 2] }
        let p = path("nested"); defer { unlink(p) }
        let f = try H5File.create(p)
        XCTAssertThrowsError(try H5Attributes.write(Nested(), to: f)) { e in
            XCTAssertTrue("\(e)".contains("is not an attribute type"), "\(e)")
        }
    }
}
