// The sharded update (train.shardOptimizer, ZeRO-1): N ranks each updating their shard of
// one flat buffer must give what one whole update gives. Simulated in one process: every
// "rank" runs its own Optimizer over the same parameters, as after the all-gather.
import XCTest
import SKESLDistributed
import SKESLModel

final class ShardedOptimizerTests: XCTestCase {
    /// Groups with different rates, so that shard boundaries cut across group boundaries.
    let runs: [(group: ParameterGroup, count: Int)] = [(.bert, 1001), (.crossmodal, 37), (.head, 513), (.crossmodal, 250)]

    func value(_ i: Int, _ step: Int, _ salt: Int) -> Float {
        var h = UInt64(i * 2_654_435_761 + step * 40_503 + salt * 97)
        h = (h ^ (h >> 13)) &* 0x5bd1e995; h ^= h >> 15
        return Float(Int(h % 2001) - 1000) / 997
    }

    /// Runs `steps` updates whole and sharded into `parts`; returns the largest difference
    /// of parameters and moments (0 means equal bit for bit, checked separately).
    /// `localNorm`: each rank clips by its own shard's norm (the bug the hook prevents).
    func compare(_ config: OptimizerConfig, parts: Int, steps: Int = 4, localNorm: Bool = false,
                 file: StaticString = #filePath, line: UInt = #line)
        -> (bitwise: Bool, maxRel: Float) {
        let n = runs.reduce(0) { $0 + $1.count }
        let layout = ShardLayout(count: n, parts: parts)
        let whole = Optimizer(config: config, segments: runs)
        let shardOpt = (0..<parts).map { _ in Optimizer(config: config, segments: runs) }
        var pw = (0..<n).map { value($0, 0, 1) }, ps = pw
        let lr: (ParameterGroup) -> Float = { g in g == .bert ? 5e-3 : g == .head ? 1e-2 : 2e-2 }
        for step in 1...steps {
            let g = (0..<n).map { value($0, step, 2) * (step == 2 ? 40 : 1) }   // step 2 clips
            var gw = g
            whole.update(params: &pw, grads: &gw, lr: lr)
            // Each rank's gradient buffer is right on its shard only; poison the rest.
            let partial = (0..<parts).map { r in layout.shard(r).reduce(0.0) { $0 + Double(g[$1]) * Double(g[$1]) } }
            var next = ps
            for r in 0..<parts {
                var gr = [Float](repeating: .nan, count: n)
                for i in layout.shard(r) { gr[i] = g[i] }
                var pr = ps
                shardOpt[r].update(params: &pr, grads: &gr, shard: layout.shard(r), sumOverRanks: { localNorm ? $0 : partial.reduce(0, +) }, lr: lr)
                for i in layout.shard(r) { next[i] = pr[i] }
                for i in 0..<n where !layout.shard(r).contains(i) {
                    XCTAssertEqual(pr[i].bitPattern, ps[i].bitPattern, "rank \(r) changed element \(i) outside its shard", file: file, line: line)
                }
            }
            ps = next
        }
        var bitwise = true, maxRel: Float = 0
        func check(_ a: Float, _ b: Float) {
            if a.bitPattern != b.bitPattern { bitwise = false }
            maxRel = max(maxRel, abs(a - b) / max(abs(a), 1e-12))
        }
        for i in 0..<n { check(pw[i], ps[i]) }
        for r in 0..<parts {
            for i in layout.shard(r) { check(whole.m[i], shardOpt[r].m[i]); check(whole.v[i], shardOpt[r].v[i]) }
        }
        return (bitwise, maxRel)
    }

    func testShardsCoverTheBufferEvenly() {
        let l = ShardLayout(count: 10, parts: 4)
        XCTAssertEqual(l.shards, [0..<3, 3..<6, 6..<8, 8..<10])
        XCTAssertEqual(l.counts(in: 2..<7), [1, 3, 1, 0])
        XCTAssertEqual(ShardLayout(count: 2, parts: 3).shards, [0..<1, 1..<2, 2..<2])
    }

    /// Without clipping each element's arithmetic is the same: bit for bit.
    func testShardedUpdateEqualsWholeBitwise() {
        for kind in [OptimizerKind.adam, .adamw, .sgd] {
            var c = OptimizerConfig()
            c.kind = kind; c.weightDecay = 0.01
            if kind == .sgd { c.momentum = 0.9 }
            for parts in [1, 2, 3, 7] {
                let r = compare(c, parts: parts)
                XCTAssertTrue(r.bitwise, "\(kind), \(parts) shards: differs by \(r.maxRel) relative")
            }
        }
    }

    /// With clipping the global norm is summed shard by shard, in another order than the
    /// whole buffer's one sum: the coefficient may differ in its last bit, no more. SGD
    /// shows clipping directly; a rank that clipped by its own shard's norm would be far off.
    func testShardedClippingUsesTheGlobalNorm() {
        for kind in [OptimizerKind.sgd, .adamw] {
            var c = OptimizerConfig()
            c.kind = kind; c.clipNorm = 1.0
            for parts in [2, 3] {
                let r = compare(c, parts: parts)
                XCTAssertLessThan(r.maxRel, 1e-5, "\(kind), \(parts) shards")
            }
        }
        var sgd = OptimizerConfig()
        sgd.kind = .sgd; sgd.clipNorm = 1.0
        XCTAssertGreaterThan(compare(sgd, parts: 3, localNorm: true).maxRel, 1e-3, "the comparison must see a rank-local norm")
    }
}
