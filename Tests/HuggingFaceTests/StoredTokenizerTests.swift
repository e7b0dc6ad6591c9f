// The tokenizer import-hf stores in a weights file reads back with its settings.
import XCTest
import Foundation
import SKESLHDF5
import SKESLText
import SKESLHuggingFace

final class StoredTokenizerTests: XCTestCase {
    func testStoredVocabularyKeepsItsCasing() throws {
        let src = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/text/tiny_bert").path
        let dir = NSTemporaryDirectory() + "skesl-stored-tok-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for lower in [true, false] {
            let model = dir + "/model-\(lower)"
            try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
            for f in ["config.json", "model.safetensors", "vocab.txt"] {
                try FileManager.default.copyItem(atPath: src + "/" + f, toPath: model + "/" + f)
            }
            try Data("{\"do_lower_case\": \(lower)}".utf8).write(to: URL(fileURLWithPath: model + "/tokenizer_config.json"))
            let weights = model + ".h5"
            try HuggingFaceBert.importBert(from: model, to: weights)
            let stored = try XCTUnwrap(try HuggingFaceBert.readTokenizer(from: try H5File.open(weights)))
            let direct = try BertTokenizer.load(model)
            XCTAssertEqual(stored.options.lowercase, lower)
            XCTAssertEqual(stored.tokens, direct.tokens)
            for text in ["Hello WORLD, it was GREAT!", "Ünïcödé café"] {
                XCTAssertEqual(stored.encode(text, maxLength: 16), direct.encode(text, maxLength: 16), text)
            }
        }
    }
}
