// How a flat buffer of n elements is split into one contiguous shard per rank, for the
// sharded optimiser (train.shardOptimizer, ZeRO-1 as in llm.c): each rank receives the sum
// of the gradients of its shard only (a reduce-scatter per bucket), updates that shard of
// the parameters and of the optimiser's moments, and an all-gather gives every rank the
// whole updated parameter buffer.
//
// Shards are in rank order and differ in length by at most one element, so the optimiser's
// work (memory-bound: it streams parameters, gradients and both moments) splits evenly.
// Contiguous shards make the all-gather one MPI_Allgatherv in place, and make a bucket's
// part of each shard a consecutive run of the bucket in rank order, which is exactly how
// MPI_Reduce_scatter splits its send buffer.
public struct ShardLayout: Sendable, Equatable {
    public let count: Int
    public let parts: Int

    public init(count: Int, parts: Int) {
        precondition(count >= 0 && parts >= 1, "ShardLayout needs count >= 0 and parts >= 1")
        self.count = count
        self.parts = parts
    }

    /// Elements of rank r's shard.
    public func shard(_ r: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let lo = r * base + min(r, extra)
        return lo..<(lo + base + (r < extra ? 1 : 0))
    }

    public var shards: [Range<Int>] { (0..<parts).map(shard) }

    /// How many elements of `range` fall in each rank's shard (the reduce-scatter's counts).
    public func counts(in range: Range<Int>) -> [Int] {
        shards.map { $0.clamped(to: range).count }
    }
}
