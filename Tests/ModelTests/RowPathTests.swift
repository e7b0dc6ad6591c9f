// The [MASK]-row path of pretraining equals the full computation: predictions, loss and
// every gradient, with dropout on (the same masks are drawn for the rows computed).
import XCTest
import SKESLKernels
import SKESLModel

final class RowPathTests: XCTestCase {
    func compare(_ c: ModelConfig, file: StaticString = #filePath, line: UInt = #line) throws {
        let full = try SKESLNetwork(config: c, seed: 3), fast = try SKESLNetwork(config: c, seed: 3)
        randomise(full, scale: 0.3, seed: 5); randomise(fast, scale: 0.3, seed: 5)
        full.rowPathEnabled = false
        let st = randomBatch(c, B: 4, L: 12)
        // Mask positions in the padding and at the last token too.
        st.maskPositions[2] = 11; st.maskPositions[3] = 0
        for n in [full, fast] { n.zeroGradients() }
        let lf = try full.forward(st.batch(), training: true, seed: 9, epoch: 2)
        let lr = try fast.forward(st.batch(), training: true, seed: 9, epoch: 2)
        XCTAssertNotNil(fast.bertMaskRows, file: file, line: line)
        XCTAssertNil(full.bertMaskRows, file: file, line: line)
        XCTAssertEqual(Double(lr), Double(lf), accuracy: 1e-5 * Double(abs(lf)), file: file, line: line)
        for i in 0..<4 { XCTAssertEqual(fast.predictions[i], full.predictions[i], accuracy: 1e-5 * max(1, abs(full.predictions[i])), file: file, line: line) }
        full.backward(); fast.backward()
        for e in full.layout.entries where e.offset >= full.layout.trainableStart {
            let a = full.gradient(e.name)!, b = fast.gradient(e.name)!
            var d = 0.0, n = 0.0
            for i in 0..<e.count { d += Double(a[i] - b[i]) * Double(a[i] - b[i]); n += Double(a[i]) * Double(a[i]) }
            XCTAssertLessThanOrEqual(d.squareRoot(), 1e-5 * n.squareRoot() + 1e-9, "\(e.name)", file: file, line: line)
        }
    }

    func testSharedWithDropout() throws { try compare(smallConfig(task: .pretrain, freeze: true, shared: true, dropout: 0.3)) }
    func testIndependentMaskedPadding() throws {
        try compare(smallConfig(task: .pretrain, freeze: true, shared: false, layers: 3, maskPadding: true, dropout: 0.2))
    }
    func testNoDropout() throws { try compare(smallConfig(task: .pretrain, freeze: true)) }
    func testOneLayerBert() throws {
        var c = smallConfig(task: .pretrain, freeze: true, dropout: 0.1); c.bert.numHiddenLayers = 1
        try compare(c)
    }
}
