// The SKESL network: BERT -> cross-modal encoder -> head (method sections 2 to 6),
// llm.c style: explicit forward and backward over contiguous Float32 buffers, one flat
// parameter buffer, one flat gradient buffer (trainable suffix only), activations in
// an arena reused across steps.
import SKESLKernels

public final class SKESLNetwork {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// All parameters, in layout order.
    public let params: FPtr
    /// Gradients of the trainable suffix (`layout.trainableStart ..< layout.count`).
    public let grads: FPtr
    /// Predictions of the last forward, [B].
    public private(set) var predictions: FPtr
    public private(set) var lastLoss: Float = 0
    /// Pretraining with a frozen BERT computes BERT's last layer, the encoder and the head
    /// for the [MASK] row only (exactly the full computation's values). Off: the full
    /// computation over every row, as the reference writes it (tests, benchmarks).
    public var rowPathEnabled = true
    var usesRowPath: Bool {
        rowPathEnabled && config.task == .pretrain && config.freezeBert && !bertLayers.isEmpty
    }
    private var predictionsCapacity = 1
    var readyHook: ((Range<Int>) -> Void)? = nil
    var readyEnd = 0

    let arena = Arena()
    var bertLayers: [BertLayerOffsets] = []
    var bertEmb = BertEmbeddingOffsets()
    var cmaSets: [CrossModalOffsets] = []
    var head = HeadOffsets()

    // State of the last forward, for backward.
    var state = ForwardState()

    /// Not owned: a gradient buffer the caller provides (and keeps alive longer than this).
    private let gradsProvided: Bool

    /// `gradients`: where to keep the gradients instead of a buffer of its own, at least
    /// `ParameterLayout(config:).trainableCount` floats that outlive the network (the
    /// shared-memory gradient sum's input, so that backward writes where the other ranks read).
    public init(config: ModelConfig, seed: UInt64 = 0, gradients: FPtr? = nil) throws {
        try config.validate()
        self.config = config
        layout = ParameterLayout(config: config)
        params = .allocate(capacity: max(layout.count, 1))
        params.initialize(repeating: 0, count: max(layout.count, 1))
        gradsProvided = gradients != nil
        grads = gradients ?? .allocate(capacity: max(layout.trainableCount, 1))
        grads.update(repeating: 0, count: max(layout.trainableCount, 1))
        predictions = .allocate(capacity: 1)
        layout.initialise(params, seed: seed, padTokenId: config.bert.padTokenId)
        resolveOffsets()
    }

    deinit { params.deallocate(); if !gradsProvided { grads.deallocate() }; predictions.deallocate() }

    /// The parameter tensor `name`.
    public func parameter(_ name: String) -> FPtr? { layout.entry(name).map { params + $0.offset } }
    /// The gradient of `name`, or nil when it is frozen.
    public func gradient(_ name: String) -> FPtr? { layout.entry(name).flatMap { g($0.offset) } }

    public func zeroGradients() { grads.update(repeating: 0, count: max(layout.trainableCount, 1)) }

    @inline(__always) func p(_ off: Int) -> FPtr { params + off }
    @inline(__always) func g(_ off: Int) -> FPtr? {
        off >= layout.trainableStart ? grads + (off - layout.trainableStart) : nil
    }
    var bertTrainable: Bool { !config.freezeBert }

    private func resolveOffsets() {
        let o = layout.offset
        bertEmb = BertEmbeddingOffsets(word: o("bert.embeddings.word_embeddings.weight"),
                                       position: o("bert.embeddings.position_embeddings.weight"),
                                       type: o("bert.embeddings.token_type_embeddings.weight"),
                                       lnW: o("bert.embeddings.LayerNorm.weight"), lnB: o("bert.embeddings.LayerNorm.bias"))
        bertLayers = (0..<config.bert.numHiddenLayers).map { l in
            let p = "bert.encoder.layer.\(l)."
            return BertLayerOffsets(
                qkvW: o(p + "attention.self.query.weight"), qkvB: o(p + "attention.self.query.bias"),
                oW: o(p + "attention.output.dense.weight"), oB: o(p + "attention.output.dense.bias"),
                ln1W: o(p + "attention.output.LayerNorm.weight"), ln1B: o(p + "attention.output.LayerNorm.bias"),
                iW: o(p + "intermediate.dense.weight"), iB: o(p + "intermediate.dense.bias"),
                outW: o(p + "output.dense.weight"), outB: o(p + "output.dense.bias"),
                ln2W: o(p + "output.LayerNorm.weight"), ln2B: o(p + "output.LayerNorm.bias"))
        }
        if config.task != .textOnly {
            let sets = config.crossmodal.shared ? 1 : config.crossmodal.layers
            cmaSets = (0..<sets).map { l in
                let p = "crossmodal.layers.\(l)."
                func mod(_ m: String) -> ModalityOffsets {
                    ModalityOffsets(lnTextW: o(p + m + ".ln_text.weight"), lnTextB: o(p + m + ".ln_text.bias"),
                                    lnModW: o(p + m + ".ln_modality.weight"), lnModB: o(p + m + ".ln_modality.bias"),
                                    qW: o(p + m + ".q.weight"), qB: o(p + m + ".q.bias"),
                                    kvW: o(p + m + ".k.weight"), kvB: o(p + m + ".k.bias"),
                                    outW: o(p + m + ".out.weight"), outB: o(p + m + ".out.bias"))
                }
                return CrossModalOffsets(a: mod("cma_a"), v: mod("cma_v"),
                                         lnW: o(p + "ln.weight"), lnB: o(p + "ln.bias"),
                                         fcW: o(p + "fc.weight"), fcB: o(p + "fc.bias"))
            }
        }
        head = HeadOffsets(fc1W: o("head.fc1.weight"), fc1B: o("head.fc1.bias"),
                           fc2W: o("head.fc2.weight"), fc2B: o("head.fc2.bias"))
    }

    // MARK: checks

    /// Rejects a batch the model cannot read, naming the sample and the fix.
    public func check(_ b: Batch) throws {
        let bc = config.bert
        guard b.textLength <= bc.maxPositionEmbeddings else {
            throw ModelError("text length \(b.textLength) exceeds max_position_embeddings \(bc.maxPositionEmbeddings): truncate the token ids")
        }
        for s in 0..<b.size {
            for t in 0..<b.textLength {
                let id = b.inputIds[s * b.textLength + t], ty = b.tokenTypeIds[s * b.textLength + t]
                guard id >= 0 && Int(id) < bc.vocabSize else {
                    throw ModelError("sample \(b.sampleIds[s]): token id \(id) at position \(t) is outside the vocabulary (size \(bc.vocabSize)): the store was tokenized with another vocabulary")
                }
                guard ty >= 0 && Int(ty) < bc.typeVocabSize else {
                    throw ModelError("sample \(b.sampleIds[s]): token type \(ty) at position \(t) is outside type_vocab_size \(bc.typeVocabSize)")
                }
            }
            if config.task == .pretrain {
                let m = b.maskPositions[s]
                guard m >= 0 && Int(m) < b.textLength else {
                    throw ModelError("sample \(b.sampleIds[s]): mask position \(m) outside 0..<\(b.textLength)")
                }
            }
        }
    }

    // MARK: step

    /// Forward pass: predictions, and the L1 loss summed over the batch divided by
    /// `normalizer` (the global batch size; defaults to this batch's size).
    /// With `training`, dropout is active (masks keyed by seed, epoch and sample id) and
    /// the activations needed by `backward()` are kept.
    @discardableResult
    ///
    /// `bertRows` [B, H]: BERT's [MASK]-row outputs computed beforehand (the frozen-BERT
    /// cache); BERT is then skipped (pretraining with a frozen BERT only).
    public func forward(_ b: Batch, training: Bool, needsBackward: Bool? = nil, seed: UInt64 = 0, epoch: UInt64 = 0,
                        normalizer: Int? = nil, bertRows: UnsafePointer<Float>? = nil) throws -> Float {
        try check(b)
        arena.reset()
        let keys = DropoutKeys(seed: seed, epoch: epoch, sampleIds: b.sampleIds)
        state = ForwardState()
        state.batch = b
        state.training = training
        state.needsBackward = needsBackward ?? training
        state.keys = keys
        state.normalizer = normalizer ?? b.size
        let B = b.size, L = b.textLength, H = config.bert.hiddenSize
        let pooled: FPtr
        let top: FPtr
        state.rowPath = usesRowPath
        if let given = bertRows {
            guard config.task == .pretrain && config.freezeBert else {
                throw ModelError("precomputed BERT rows need pretraining with a frozen BERT")
            }
            state.rowPath = true
            let rows = arena.floats(B * H)
            rows.update(from: given, count: B * H)
            state.bertOut = nil
            state.bertMaskRows = rows
            top = crossModalRowsForward(rows, b, positions: b.maskPositions)
            pooled = top
        } else if state.rowPath {
            // Only the [MASK] row reaches the loss, and no text row mixes with another after
            // BERT's last attention: compute BERT's last layer and the encoder for that row.
            let before = bertForward(b, layers: bertLayers.count - 1)
            let rows = bertLastLayerRows(before, b, positions: b.maskPositions)
            state.bertOut = nil
            state.bertMaskRows = rows
            top = crossModalRowsForward(rows, b, positions: b.maskPositions)
            pooled = top
        } else {
            let x0 = bertForward(b)
            top = config.task == .textOnly ? x0 : crossModalForward(x0, b)
            pooled = arena.floats(B * H)
            switch config.task {
            case .pretrain:
                GatherRows.forward(pooled, top, positions: b.maskPositions, batch: B, length: L, dim: H)
            case .finetune, .textOnly:
                MeanPool.forward(pooled, top, mask: config.maskedMeanPooling ? b.attentionMask : nil, batch: B, length: L, dim: H)
            }
        }
        state.top = top
        state.pooled = pooled
        let y = headForward(pooled, B)
        if B > predictionsCapacity {
            predictions.deallocate()
            predictions = .allocate(capacity: B)
            predictionsCapacity = B
        }
        predictions.update(from: y, count: B)
        lastLoss = L1Loss.forward(y, b.targets, batch: B, normalizer: state.normalizer)
        return lastLoss
    }

    /// BERT's last hidden state [B, L, H] of the last forward (valid until the next one).
    public var bertOutput: UnsafePointer<Float>? { state.bertOut.map { UnsafePointer($0) } }
    /// The cross-modal encoder's output X_L [B, L, H] of the last forward (nil for text_only;
    /// [B, H], the [MASK] rows, on the row path).
    public var encoderOutput: UnsafePointer<Float>? { config.task == .textOnly ? nil : state.top.map { UnsafePointer($0) } }
    /// BERT's last hidden state at the [MASK] rows [B, H] when the row path ran.
    public var bertMaskRows: UnsafePointer<Float>? { state.bertMaskRows.map { UnsafePointer($0) } }

    /// BERT's last hidden state at `b.maskPositions` [B, H], in eval mode (no dropout):
    /// what the frozen-BERT cache stores. Valid until the next forward.
    public func encodeMaskRows(_ b: Batch) throws -> UnsafePointer<Float> {
        try check(b)
        arena.reset()
        state = ForwardState()
        state.batch = b
        state.training = false
        state.keys = DropoutKeys(seed: 0, epoch: 0, sampleIds: b.sampleIds)
        if bertLayers.isEmpty {
            let x = bertForward(b)
            let rows = arena.floats(b.size * config.bert.hiddenSize)
            GatherRows.forward(rows, x, positions: b.maskPositions, batch: b.size, length: b.textLength, dim: config.bert.hiddenSize)
            return UnsafePointer(rows)
        }
        let before = bertForward(b, layers: bertLayers.count - 1)
        return UnsafePointer(bertLastLayerRows(before, b, positions: b.maskPositions))
    }

    /// Backward pass of the last forward: accumulates into `grads` (call `zeroGradients()`
    /// at the start of a global step; micro-batches accumulate).
    ///
    /// `onReady`, when given, is told each span of the gradient buffer (offsets into
    /// `grads`) as soon as backward has finished it, from the last parameters to the
    /// first: the all-reduce of those buckets can start while backward goes on. Every
    /// element of the buffer is reported exactly once.
    public func backward(onReady: ((Range<Int>) -> Void)? = nil) {
        precondition(state.needsBackward, "backward() needs forward(training:needsBackward: true)")
        readyHook = onReady
        readyEnd = layout.trainableCount
        defer { readyHook = nil }
        let b = state.batch!
        let B = b.size, L = b.textLength, H = config.bert.hiddenSize
        let dy = arena.floats(B)
        L1Loss.backward(dy, predictions, b.targets, batch: B, normalizer: state.normalizer)
        let dPooled = arena.floats(B * H)
        headBackward(dy: dy, dx: dPooled, B)
        reportReady(downTo: layout.offset("head.fc1.weight"))
        if state.rowPath {
            crossModalRowsBackward(dPooled, b)
            reportReady(downTo: layout.trainableStart)
            return
        }
        let dTop = arena.floats(B * L * H)
        switch config.task {
        case .pretrain:
            GatherRows.backward(dTop, dOut: dPooled, positions: b.maskPositions, batch: B, length: L, dim: H)
        case .finetune, .textOnly:
            MeanPool.backward(dTop, dOut: dPooled, mask: config.maskedMeanPooling ? b.attentionMask : nil, batch: B, length: L, dim: H)
        }
        var dX0 = dTop
        if config.task != .textOnly {
            dX0 = crossModalBackward(dTop, b)
            reportReady(downTo: layout.offset("crossmodal.layers.0.cma_a.ln_text.weight"))
        }
        if bertTrainable { bertBackward(dX0, b) }
        reportReady(downTo: layout.trainableStart)
    }

    /// Reports gradient elements [offset, previous report) as final (offset is a parameter
    /// offset; clamped to the trainable span).
    func reportReady(downTo offset: Int) {
        let lo = max(offset, layout.trainableStart) - layout.trainableStart
        guard let hook = readyHook, lo < readyEnd else { return }
        hook(lo..<readyEnd)
        readyEnd = lo
    }

    /// The number of dropout-site streams: named so that masks never depend on the order
    /// in which sites run.
    @inline(__always) func site(_ name: String) -> UInt64 { fnv1a64("dropout:" + name) }
}

struct ForwardState {
    var batch: Batch? = nil
    var training = false
    var needsBackward = false
    var keys: DropoutKeys? = nil
    var normalizer = 1
    var top: FPtr? = nil
    var pooled: FPtr? = nil
    var bert: [BertLayerActs] = []
    var emb = BertEmbeddingActs()
    var bertOut: FPtr? = nil
    var bertMaskAdd: FPtr? = nil
    var bertMaskRows: FPtr? = nil
    var rowPath = false
    var rowEncoder = RowEncoderActs()
    var cm = CrossModalActs()
    var headActs = HeadActs()
}

struct BertEmbeddingOffsets { var word = 0, position = 0, type = 0, lnW = 0, lnB = 0 }
struct BertLayerOffsets { var qkvW, qkvB, oW, oB, ln1W, ln1B, iW, iB, outW, outB, ln2W, ln2B: Int }
struct ModalityOffsets { var lnTextW, lnTextB, lnModW, lnModB, qW, qB, kvW, kvB, outW, outB: Int }
struct CrossModalOffsets { var a: ModalityOffsets; var v: ModalityOffsets; var lnW, lnB, fcW, fcB: Int }
struct HeadOffsets { var fc1W = 0, fc1B = 0, fc2W = 0, fc2B = 0 }
