// Import of Hugging Face BERT checkpoints into the weights file, export back, and the
// imported weights run through the Swift BERT against transformers' hidden state.
import XCTest
import TestSupport
import SKESLHDF5
@testable import SKESLModel
@testable import SKESLText
@testable import SKESLHuggingFace

final class HuggingFaceBertTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try Fixtures.tempDir("hf") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }
    func tmp(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
    let tiny = Fixtures.path("tiny_bert")

    /// A model directory with tiny_bert's config and vocabulary and the given weights file.
    func checkpointDir(_ name: String, weights: String) throws -> String {
        let d = tmp(name)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        for f in ["config.json", "vocab.txt"] {
            try FileManager.default.copyItem(atPath: (tiny as NSString).appendingPathComponent(f), toPath: (d as NSString).appendingPathComponent(f))
        }
        try FileManager.default.copyItem(atPath: weights, toPath: (d as NSString).appendingPathComponent("model.safetensors"))
        return d
    }

    func weights(_ path: String) throws -> [String: (shape: [Int], values: [Float])] {
        let f = try H5File.open(path)
        var out: [String: (shape: [Int], values: [Float])] = [:]
        for n in try f.children(of: WeightsFile.group) {
            let (v, s) = try f.read(WeightsFile.group + "/" + n, as: Float.self)
            out[n] = (s, v)
        }
        return out
    }

    func testImportBertModelCheckpoint() throws {
        let out = tmp("w.h5")
        let r = try HuggingFaceBert.importBert(from: tiny, to: out)
        XCTAssertEqual(r.config.hiddenSize, 32)
        XCTAssertEqual(r.config.numHiddenLayers, 2)
        XCTAssertEqual(r.ignored, ["pooler.dense.bias", "pooler.dense.weight"])
        XCTAssert(r.convertedFrom.isEmpty)
        var model = ModelConfig(); model.bert = r.config
        let layout = ParameterLayout(config: model)
        let bertNames = layout.entries.filter { $0.group == .bert }
        XCTAssertEqual(r.imported, bertNames.map(\.name))
        let w = try weights(out)
        XCTAssertEqual(Set(w.keys), Set(bertNames.map(\.name)))
        let st = try SafetensorsFile(path: (tiny as NSString).appendingPathComponent("model.safetensors"))
        for e in bertNames {
            let hf = String(e.name.dropFirst(5))
            XCTAssertEqual(w[e.name]?.shape, e.shape, e.name)
            XCTAssertEqual(w[e.name]?.values, try st.floats(hf), e.name)
        }
        let f = try H5File.open(out)
        XCTAssertEqual(try WeightsFile.config(in: f).bert, r.config)
        XCTAssertEqual(try f.readStrings("/tokenizer/vocab").prefix(6), ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"])
    }

    func testImportedWeightsGiveTransformersLastHiddenState() throws {
        let out = tmp("w.h5")
        let r = try HuggingFaceBert.importBert(from: tiny, to: out)
        try compareHiddenState(weights: out, bert: r.config, fixture: Fixtures.path("tiny_bert_outputs.h5"), tolerance: 1e-5)
    }

    func testPretrainingShardedAndHalfPrecisionCheckpoints() throws {
        let reference = try weights({ let o = tmp("ref.h5"); try HuggingFaceBert.importBert(from: tiny, to: o); return o }())

        let pre = try checkpointDir("pre", weights: (tiny as NSString).appendingPathComponent("model_pretraining.safetensors"))
        let rp = try HuggingFaceBert.importBert(from: pre, to: tmp("pre.h5"))
        XCTAssert(rp.ignored.contains("cls.predictions.transform.dense.weight"))
        XCTAssert(rp.ignored.contains("bert.pooler.dense.weight"))
        XCTAssertFalse(rp.ignored.contains { $0.hasPrefix("bert.encoder") || $0.hasPrefix("bert.embeddings") })
        let wp = try weights(tmp("pre.h5"))
        for (k, v) in reference { XCTAssertEqual(wp[k]?.values, v.values, k) }

        _ = try HuggingFaceBert.importBert(from: Fixtures.path("tiny_bert_sharded"), to: tmp("sh.h5"))
        let ws = try weights(tmp("sh.h5"))
        XCTAssertEqual(Set(ws.keys), Set(reference.keys))
        for (k, v) in reference { XCTAssertEqual(ws[k]?.values, v.values, k) }

        for (dtype, rel) in [("f16", Float(1.0 / 2048)), ("bf16", Float(1.0 / 256))] {
            let d = try checkpointDir(dtype, weights: (tiny as NSString).appendingPathComponent("model_\(dtype).safetensors"))
            let r = try HuggingFaceBert.importBert(from: d, to: tmp("\(dtype).h5"))
            XCTAssertEqual(r.convertedFrom.count, reference.count)
            XCTAssertEqual(Set(r.convertedFrom.values), [dtype.uppercased()])
            let w = try weights(tmp("\(dtype).h5"))
            for (k, v) in reference {
                let got = try XCTUnwrap(w[k]?.values, k)
                for (a, b) in zip(got, v.values) { XCTAssertLessThanOrEqual(abs(a - b), rel * abs(b) + 1e-7, "\(dtype) \(k)") }
                XCTAssertNotEqual(got, v.values, "\(dtype) \(k) went through a conversion")
            }
        }
    }

    func testBadCheckpointsAreClearErrors() throws {
        func err(_ f: () throws -> Any) -> String { do { _ = try f(); return "no error" } catch { return "\(error)" } }
        let st = try SafetensorsFile(path: (tiny as NSString).appendingPathComponent("model.safetensors"))
        // A tensor missing, then one with the wrong shape.
        var tensors = try st.names.map { (name: $0, shape: st.entries[$0]!.shape, values: try st.floats($0)) }
        tensors.removeAll { $0.name == "encoder.layer.1.output.dense.weight" }
        try SafetensorsFile.write(tmp("missing.safetensors"), tensors: tensors)
        let m = try checkpointDir("missing", weights: tmp("missing.safetensors"))
        XCTAssert(err { try HuggingFaceBert.importBert(from: m, to: self.tmp("x.h5")) }
                    .contains("the checkpoint has no tensor encoder.layer.1.output.dense.weight"))
        tensors.append((name: "encoder.layer.1.output.dense.weight", shape: [64, 32], values: [Float](repeating: 0, count: 2048)))
        try SafetensorsFile.write(tmp("shape.safetensors"), tensors: tensors)
        let s = try checkpointDir("shape", weights: tmp("shape.safetensors"))
        XCTAssert(err { try HuggingFaceBert.importBert(from: s, to: self.tmp("x.h5")) }
                    .contains("tensor encoder.layer.1.output.dense.weight has shape [64, 32], config.json implies [32, 64]"))
        // A truncated safetensors file.
        let full = try XCTUnwrap(FileManager.default.contents(atPath: (tiny as NSString).appendingPathComponent("model.safetensors")))
        try full.prefix(full.count - 100).write(to: URL(fileURLWithPath: tmp("cut.safetensors")))
        let c = try checkpointDir("cut", weights: tmp("cut.safetensors"))
        XCTAssert(err { try HuggingFaceBert.importBert(from: c, to: self.tmp("x.h5")) }.contains("truncated?"))
        // Not BERT; no config; no weights; not a directory.
        let rob = try checkpointDir("roberta", weights: (tiny as NSString).appendingPathComponent("model.safetensors"))
        let cfgPath = (rob as NSString).appendingPathComponent("config.json")
        let cfg = try String(contentsOfFile: cfgPath, encoding: .utf8).replacingOccurrences(of: "\"model_type\": \"bert\"", with: "\"model_type\": \"roberta\"")
        try cfg.write(toFile: cfgPath, atomically: true, encoding: .utf8)
        XCTAssert(err { try HuggingFaceBert.importBert(from: rob, to: self.tmp("x.h5")) }.contains("model_type is roberta"))
        try FileManager.default.removeItem(atPath: cfgPath)
        XCTAssert(err { try HuggingFaceBert.importBert(from: rob, to: self.tmp("x.h5")) }.contains("no config.json"))
        let nw = try checkpointDir("noweights", weights: (tiny as NSString).appendingPathComponent("model.safetensors"))
        try FileManager.default.removeItem(atPath: (nw as NSString).appendingPathComponent("model.safetensors"))
        XCTAssert(err { try HuggingFaceBert.importBert(from: nw, to: self.tmp("x.h5")) }.contains("no model.safetensors nor model.safetensors.index.json"))
        XCTAssert(err { try HuggingFaceBert.importBert(from: "/no/such/model", to: self.tmp("x.h5")) }.contains("/no/such/model: not a directory"))
    }

    func testExportRoundTripsAndReimports() throws {
        let w = tmp("w.h5")
        let r = try HuggingFaceBert.importBert(from: tiny, to: w)
        let out = tmp("export")
        try HuggingFaceBert.exportBert(from: w, to: out)
        let st = try SafetensorsFile(path: (out as NSString).appendingPathComponent("model.safetensors"))
        let orig = try SafetensorsFile(path: (tiny as NSString).appendingPathComponent("model.safetensors"))
        XCTAssertEqual(Set(st.names), Set(orig.names.filter { !$0.hasPrefix("pooler.") }))
        for n in st.names {
            XCTAssertEqual(st.entries[n]?.dtype, "F32")
            XCTAssertEqual(st.entries[n]?.shape, orig.entries[n]?.shape)
            XCTAssertEqual(try st.floats(n), try orig.floats(n), n)
        }
        XCTAssertEqual(try BertConfig.load(huggingFaceConfig: (out as NSString).appendingPathComponent("config.json")), r.config)
        XCTAssertEqual(try String(contentsOfFile: (out as NSString).appendingPathComponent("vocab.txt"), encoding: .utf8),
                       try String(contentsOfFile: (tiny as NSString).appendingPathComponent("vocab.txt"), encoding: .utf8))
        let back = tmp("back.h5")
        _ = try HuggingFaceBert.importBert(from: out, to: back)
        let a = try weights(w), b = try weights(back)
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        for (k, v) in a { XCTAssertEqual(b[k]?.values, v.values, k) }
        // A weights file without a stored vocabulary needs --tokenizer.
        let f = try H5File.open(w, writable: true)
        try f.delete("/tokenizer/vocab"); try f.close()
        // A refusal leaves nothing behind: no folder that from_pretrained would load without
        // its vocabulary, no partial folder beside it.
        XCTAssertThrowsError(try HuggingFaceBert.exportBert(from: w, to: tmp("e2"))) { XCTAssert("\($0)".contains("pass the tokenizer")) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp("e2")), "a refused export left a folder")
        let parent = (tmp("e2") as NSString).deletingLastPathComponent
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: parent).contains { $0.hasPrefix("e2.") }, "a partial folder was left")
        try HuggingFaceBert.exportBert(from: w, to: tmp("e2"), tokenizer: tiny)
        XCTAssert(FileManager.default.fileExists(atPath: tmp("e2/vocab.txt")))
        // A refused export over an existing one leaves the existing one whole.
        XCTAssertThrowsError(try HuggingFaceBert.exportBert(from: w, to: tmp("e2")))
        for n in ["config.json", "model.safetensors", "vocab.txt"] { XCTAssert(FileManager.default.fileExists(atPath: tmp("e2/" + n)), n) }
        // And a second export replaces it whole (a stale file of the old one does not survive).
        try "stale".write(toFile: tmp("e2/stale.txt"), atomically: true, encoding: .utf8)
        try HuggingFaceBert.exportBert(from: w, to: tmp("e2"), tokenizer: tiny)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp("e2/stale.txt")))
        XCTAssert(FileManager.default.fileExists(atPath: tmp("e2/model.safetensors")))
    }

    func testExportLoadsInTransformers() throws {
        guard let py = PythonEnvironment.venvPython(repoRoot: Fixtures.repoRoot),
              PythonEnvironment.run(py, ["-c", "import torch, transformers, h5py"]) != nil else {
            throw XCTSkip("the venv has no torch/transformers (scripts/setup --torch): the transformers load check is skipped")
        }
        let w = tmp("w.h5")
        try HuggingFaceBert.importBert(from: tiny, to: w)
        try HuggingFaceBert.exportBert(from: w, to: tmp("export"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: py)
        p.arguments = [(Fixtures.repoRoot as NSString).appendingPathComponent("scripts/check_hf_export.py"), tmp("export"),
                       Fixtures.path("tiny_bert_outputs.h5")]
        let o = Pipe(); p.standardOutput = o; p.standardError = o
        try p.run()
        let text = String(decoding: o.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
    }
}

/// Runs the Swift BERT (SKESLNetwork, text-only task, no dropout) on a fixture's inputs and
/// compares its last hidden state with the fixture's: max |a - b| <= tolerance × max |b|.
func compareHiddenState(weights: String, bert: BertConfig, fixture: String, tolerance: Float,
                        file: StaticString = #filePath, line: UInt = #line) throws {
    var model = ModelConfig()
    model.bert = bert
    model.task = .textOnly
    let net = try SKESLNetwork(config: model)
    let (loaded, _) = try WeightsFile.read(into: net, from: try H5File.open(weights), missing: .keep)
    XCTAssertEqual(loaded.count, net.layout.entries.filter { $0.group == .bert }.count, file: file, line: line)
    let f = try H5File.open(fixture)
    let (ids, shape) = try f.read("input_ids", as: Int32.self)
    let types = try f.read("token_type_ids", as: Int32.self).values
    let mask = try f.read("attention_mask", as: Int32.self).values
    let (want, hs) = try f.read("last_hidden_state", as: Float.self)
    let B = shape[0], L = shape[1], H = hs[2]
    XCTAssertEqual(H, bert.hiddenSize, file: file, line: line)
    let st = BatchStorage(size: B, textLength: L, audioFrames: 1, audioDim: model.crossmodal.audioDim,
                          videoFrames: 1, videoDim: model.crossmodal.videoDim)
    st.inputIds.update(from: ids, count: B * L)
    st.tokenTypeIds.update(from: types, count: B * L)
    st.attentionMask.update(from: mask, count: B * L)
    for i in 0..<B { st.sampleIds[i] = Int64(i); st.targets[i] = 0 }
    try net.forward(st.batch(), training: false)
    let got = try XCTUnwrap(net.state.bertOut, file: file, line: line)
    var maxErr: Float = 0, maxRef: Float = 0
    for i in 0..<(B * L * H) { maxErr = max(maxErr, abs(got[i] - want[i])); maxRef = max(maxRef, abs(want[i])) }
    XCTAssertLessThanOrEqual(maxErr, tolerance * maxRef, "max error \(maxErr), max |reference| \(maxRef)", file: file, line: line)
    print("hidden state: max error \(maxErr) over max |ref| \(maxRef) (relative \(maxErr / maxRef))")
}
