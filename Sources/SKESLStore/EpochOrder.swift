// The global sample order of an epoch and how a step's samples are divided.
//
// Order: a keyed pseudo-random permutation of 0..<n computed element by element, so
// that no rank holds an O(n) permutation: a balanced Feistel network on 2h bits
// (4^h >= n) whose round function is Philox keyed by (seed, "store.order") with the
// epoch and the round in the counter, plus cycle walking (re-apply until the value
// falls below n; a bijection on 0..<4^h restricted this way is a bijection on 0..<n,
// and since 4^h < 4n the expected number of walks is below 4).
import SKESLKernels

public struct EpochOrder: Sendable {
    public let count: Int
    public let epoch: Int
    public let shuffled: Bool
    private let halfBits: Int
    private let mask: UInt64
    private let k0: UInt32, k1: UInt32

    public static let rounds = 6

    public init(count: Int, seed: UInt64, epoch: Int, shuffle: Bool = true) {
        self.count = count; self.epoch = epoch; shuffled = shuffle
        var bits = 1
        while bits < 62 && (UInt64(1) << UInt64(2 * bits)) < UInt64(max(count, 1)) { bits += 1 }
        halfBits = bits
        mask = (UInt64(1) << UInt64(bits)) - 1
        let key = KeyedRandom(seed: seed, stream: "store.order")
        k0 = key.k0; k1 = key.k1
    }

    @inline(__always)
    private func feistel(_ x: UInt64) -> UInt64 {
        var l = x >> UInt64(halfBits), r = x & mask
        for round in 0..<EpochOrder.rounds {
            let f = philox4x32(UInt32(truncatingIfNeeded: r), UInt32(truncatingIfNeeded: r >> 32),
                               UInt32(round), UInt32(truncatingIfNeeded: epoch), key: k0, k1)
            let fv = ((UInt64(f.0) << 32) | UInt64(f.1)) & mask
            (l, r) = (r, l ^ fv)
        }
        return (l << UInt64(halfBits)) | r
    }

    /// The sample index at position `p` (0 <= p < count) of this epoch's order.
    @inline(__always)
    public func element(_ p: Int) -> Int {
        guard shuffled else { return p }
        var x = UInt64(p)
        repeat { x = feistel(x) } while x >= UInt64(count)
        return Int(x)
    }
}

/// Part `k` of `parts` contiguous, near-equal parts of `r` (sizes differ by at most one;
/// the first parts are the shorter ones).
@inline(__always)
public func contiguousPart(_ r: Range<Int>, parts: Int, index k: Int) -> Range<Int> {
    let m = r.count
    return (r.lowerBound + k * m / parts)..<(r.lowerBound + (k + 1) * m / parts)
}

/// Where a run resumes: the epoch and the first global position of its order not yet
/// consumed. It does not mention ranks, so it stays valid when the world size changes.
public struct LoaderCursor: Codable, Equatable, Sendable, CustomStringConvertible {
    public var epoch: Int
    public var position: Int
    public init(epoch: Int, position: Int) { self.epoch = epoch; self.position = position }
    public var description: String { "epoch \(epoch), position \(position)" }
}
