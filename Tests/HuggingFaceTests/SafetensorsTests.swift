// The safetensors reader: round trip, dtype conversion, and corrupt files.
import XCTest
import TestSupport
@testable import SKESLText
@testable import SKESLHuggingFace

final class SafetensorsTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try Fixtures.tempDir("st") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }
    func path(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }

    /// A file with the given header JSON and data bytes.
    func raw(_ name: String, header: String, data: [UInt8], lengthOverride: UInt64? = nil) throws -> String {
        var d = Data()
        withUnsafeBytes(of: (lengthOverride ?? UInt64(header.utf8.count)).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(header.utf8)); d.append(contentsOf: data)
        try d.write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    func testRoundTripF32() throws {
        let p = path("a.safetensors")
        try SafetensorsFile.write(p, tensors: [("x.weight", [2, 3], [1, -2, 3.5, 0, .leastNormalMagnitude, 1e30]), ("b", [1], [7])])
        let f = try SafetensorsFile(path: p)
        XCTAssertEqual(f.names, ["b", "x.weight"])
        XCTAssertEqual(f.entries["x.weight"]?.shape, [2, 3])
        XCTAssertEqual(f.entries["x.weight"]?.dtype, "F32")
        XCTAssertEqual(try f.floats("x.weight"), [1, -2, 3.5, 0, .leastNormalMagnitude, 1e30])
        XCTAssertEqual(try f.floats("b"), [7])
        XCTAssertEqual(f.metadata["format"], "pt")
        let head = try XCTUnwrap(FileManager.default.contents(atPath: p))
        XCTAssertEqual(head.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8, 0, "data aligned to 8 bytes")
    }

    func testHalfAndBFloat16AreConverted() throws {
        // F16: 1.0, -2.0, 2^-24 (smallest subnormal), 65504, +inf; BF16: 1.0, -3.0, 2^-133 (subnormal)
        let h: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00]
        let b: [UInt16] = [0x3F80, 0xC040, 0x0001]
        let bytes = (h + b).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let p = try raw("h.safetensors", header: #"{"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[10,16]}}"#, data: bytes)
        let f = try SafetensorsFile(path: p)
        XCTAssertEqual(try f.floats("h"), [1, -2, Float(sign: .plus, exponent: -24, significand: 1), 65504, .infinity])
        XCTAssertEqual(try f.floats("b"), [1, -3, Float(bitPattern: 1 << 16)])
        let nan = try raw("n.safetensors", header: #"{"n":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#, data: [0x00, 0x7E])
        XCTAssert(try SafetensorsFile(path: nan).floats("n")[0].isNaN)
    }

    func testCorruptFilesAreClearErrors() throws {
        func err(_ p: String, _ read: String? = nil) -> String {
            do { let f = try SafetensorsFile(path: p); if let r = read { _ = try f.floats(r) }; return "no error" }
            catch { return "\(error)" }
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path("short")))
        XCTAssert(err(path("short")).contains("shorter than the 8-byte header length"))
        XCTAssert(err(try raw("len", header: "{}", data: [], lengthOverride: 1 << 40)).contains("exceeds the file"))
        XCTAssert(err(try raw("json", header: "{nope", data: [])).contains("the header is not a JSON object"))
        XCTAssert(err(try raw("bounds", header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0]))
                    .contains("tensor w spans bytes 0..<16 but the data section holds 4"))
        XCTAssert(err(try raw("shape", header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)))
                    .contains("tensor w of shape [3] and dtype F32 needs 12 bytes, has 8"))
        XCTAssert(err(try raw("keys", header: #"{"w":{"dtype":"F32"}}"#, data: [])).contains("tensor w lacks dtype, shape or data_offsets"))
        XCTAssert(err(try raw("i64", header: #"{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)), "w")
                    .contains("tensor w has dtype I64; weights must be F32, F16, BF16 or F64"))
        XCTAssert(err(path("missing")).contains("no such safetensors file"))
    }
}
