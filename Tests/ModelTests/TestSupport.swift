import Foundation
import SKESLKernels
import SKESLModel

/// A small config for tests (sizes as the PyTorch fixtures use).
func smallConfig(task: ModelTask = .pretrain, freeze: Bool = true, shared: Bool = true, layers: Int = 2,
                 maskPadding: Bool = false, maskedPool: Bool = false, dropout: Float = 0) -> ModelConfig {
    var c = ModelConfig()
    c.bert.vocabSize = 64; c.bert.hiddenSize = 32; c.bert.numHiddenLayers = 2; c.bert.numAttentionHeads = 4
    c.bert.intermediateSize = 64; c.bert.maxPositionEmbeddings = 40; c.bert.typeVocabSize = 2
    c.bert.hiddenDropoutProb = dropout; c.bert.attentionProbsDropoutProb = dropout
    c.crossmodal.layers = layers; c.crossmodal.attentionDim = 16; c.crossmodal.audioDim = 7; c.crossmodal.videoDim = 9
    c.crossmodal.shared = shared; c.crossmodal.maskModalityPadding = maskPadding; c.crossmodal.dropout = dropout
    c.head.hidden = 8; c.head.dropout = dropout
    c.task = task; c.freezeBert = freeze; c.maskedMeanPooling = maskedPool
    return c
}

/// A batch of random inputs with padding (real lengths differ per sample).
func randomBatch(_ c: ModelConfig, B: Int = 3, L: Int = 10, Ta: Int = 12, Tv: Int = 6, seed: UInt64 = 7,
                 targets: Float? = nil) -> BatchStorage {
    let s = BatchStorage(size: B, textLength: L, audioFrames: Ta, audioDim: c.crossmodal.audioDim,
                         videoFrames: Tv, videoDim: c.crossmodal.videoDim)
    let r = KeyedRandom(seed: seed, stream: "test-batch")
    var k = 0
    func next() -> Float { k += 1; return r.uniform(k) }
    for b in 0..<B {
        let len = max(2, L - 3 * b)
        for t in 0..<L {
            let i = b * L + t
            s.inputIds[i] = t < len ? Int32(1 + Int(next() * Float(c.bert.vocabSize - 2))) : 0
            s.attentionMask[i] = t < len ? 1 : 0
            s.tokenTypeIds[i] = 0
        }
        s.maskPositions[b] = Int32(1 + b)
        s.inputIds[b * L + 1 + b] = 4
        let la = max(1, Ta - 2 * b), lv = max(1, Tv - b)
        s.audioLengths[b] = Int32(la); s.videoLengths[b] = Int32(lv)
        for t in 0..<Ta { for d in 0..<c.crossmodal.audioDim { s.audio[(b * Ta + t) * c.crossmodal.audioDim + d] = t < la ? 2 * next() - 1 : 0 } }
        for t in 0..<Tv { for d in 0..<c.crossmodal.videoDim { s.video[(b * Tv + t) * c.crossmodal.videoDim + d] = t < lv ? 2 * next() - 1 : 0 } }
        s.targets[b] = targets ?? (6 * next() - 3)
        s.sampleIds[b] = Int64(100 + b)
    }
    return s
}

func fixturePath(_ parts: String...) -> String {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    url.appendPathComponent("Fixtures")
    for p in parts { url.appendPathComponent(p) }
    return url.path
}

/// Fills a tensor with U(-a, a) (scaling init so that tests are sensitive).
func randomise(_ net: SKESLNetwork, scale: Float, seed: UInt64) {
    for e in net.layout.entries {
        KeyedRandom(seed: seed, stream: e.name).fillUniform(net.params + e.offset, e.count, lo: -scale, hi: scale)
        if e.name.hasSuffix("LayerNorm.weight") || e.name.contains("ln") && e.name.hasSuffix(".weight") {
            for i in 0..<e.count { net.params[e.offset + i] += 1 }
        }
    }
}
