// Sentiment intensity head (method section 4): fc2(Dropout(ReLU(fc1(x)))).
import SKESLKernels

struct HeadActs {
    var x: FPtr? = nil, pre: FPtr? = nil, dropped: FPtr? = nil, mask: UnsafeMutablePointer<UInt8>? = nil, y: FPtr? = nil
}

extension SKESLNetwork {
    var headDropout: Float { state.training ? config.head.dropout : 0 }

    func headForward(_ x: FPtr, _ B: Int) -> FPtr {
        let H = config.bert.hiddenSize, Hh = config.head.hidden
        var a = HeadActs()
        a.x = x
        let pre = arena.floats(B * Hh), d = arena.floats(B * Hh), y = arena.floats(B)
        Linear.forward(pre, x, weight: p(head.fc1W), bias: p(head.fc1B), rows: B, inFeatures: H, outFeatures: Hh)
        ReLU.forward(d, pre, count: B * Hh)
        let pDrop = headDropout
        if pDrop > 0 {
            let m = arena.bytes(B * Hh)
            Dropout.makeMask(m, batch: B, perSample: Hh, p: pDrop, keys: state.keys!, site: site("head"))
            Dropout.apply(d, d, mask: m, count: B * Hh, p: pDrop)
            a.mask = m
        }
        Linear.forward(y, d, weight: p(head.fc2W), bias: p(head.fc2B), rows: B, inFeatures: Hh, outFeatures: 1)
        a.pre = pre; a.dropped = d; a.y = y
        state.headActs = a
        return y
    }

    func headBackward(dy: FPtr, dx: FPtr, _ B: Int) {
        let H = config.bert.hiddenSize, Hh = config.head.hidden
        let a = state.headActs
        let dd = arena.floats(B * Hh)
        Linear.backward(dx: dd, dw: g(head.fc2W), db: g(head.fc2B), dy: dy, x: a.dropped!, weight: p(head.fc2W),
                        rows: B, inFeatures: Hh, outFeatures: 1)
        if let m = a.mask { Dropout.backward(dd, dd, mask: m, count: B * Hh, p: headDropout) }
        ReLU.backward(dd, dy: dd, x: a.pre!, count: B * Hh)
        Linear.backward(dx: dx, dw: g(head.fc1W), db: g(head.fc1B), dy: dd, x: a.x!, weight: p(head.fc1W),
                        rows: B, inFeatures: H, outFeatures: Hh)
    }
}
