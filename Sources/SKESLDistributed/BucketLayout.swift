// How a flat gradient buffer of n elements is cut into all-reduce buckets, and
// which parts of each bucket the backward pass has finished in this step.
//
// Backward produces gradients from the last parameters to the first, so buckets
// are laid out from the END of the buffer: bucket 0 is the last `bucketElements`
// elements (ready first, reduced first), and the short remainder bucket, when
// bucketElements does not divide n, sits at the START of the buffer. It is the
// one reduced after backward ends, so its being small shortens the exposed tail.
public struct BucketLayout: Sendable, Equatable {
    public let count: Int
    public let bucketElements: Int

    public init(count: Int, bucketElements: Int) {
        precondition(count >= 0 && bucketElements > 0, "BucketLayout needs count >= 0 and bucketElements > 0")
        self.count = count
        self.bucketElements = bucketElements
    }

    public var bucketCount: Int { (count + bucketElements - 1) / bucketElements }

    /// Elements of bucket i (i = 0 is the end of the buffer).
    public func range(ofBucket i: Int) -> Range<Int> {
        let hi = count - i * bucketElements
        return max(0, hi - bucketElements)..<hi
    }

    /// The bucket holding element e.
    public func bucket(containing e: Int) -> Int { (count - 1 - e) / bucketElements }

    /// Buckets overlapping `r`, from the one at its end (lowest index) up.
    public func buckets(overlapping r: Range<Int>) -> ClosedRange<Int>? {
        guard !r.isEmpty else { return nil }
        return bucket(containing: r.upperBound - 1)...bucket(containing: r.lowerBound)
    }
}

/// Per-bucket record of the disjoint element ranges marked so far in a step.
/// A bucket is complete when its marked ranges cover it; marking any element
/// twice in one step is an error (it means backward's bookkeeping is wrong).
struct BucketCoverage {
    let layout: BucketLayout
    private(set) var marked: [Int]           // elements marked per bucket
    private var pieces: [[Range<Int>]]       // disjoint marked ranges per bucket

    init(layout: BucketLayout) {
        self.layout = layout
        marked = [Int](repeating: 0, count: layout.bucketCount)
        pieces = [[Range<Int>]](repeating: [], count: layout.bucketCount)
    }

    func isComplete(_ i: Int) -> Bool { marked[i] == layout.range(ofBucket: i).count }

    /// Marks r; returns the buckets this call completed, in increasing index.
    mutating func mark(_ r: Range<Int>) throws -> [Int] {
        guard r.lowerBound >= 0, r.upperBound <= layout.count else {
            throw DistributedError("markReady: range \(r) lies outside the gradient buffer 0..<\(layout.count)")
        }
        guard let span = layout.buckets(overlapping: r) else { return [] }
        // Check every piece first, so a rejected call changes nothing.
        for i in span {
            let part = r.clamped(to: layout.range(ofBucket: i))
            if let clash = pieces[i].first(where: { $0.overlaps(part) }) {
                let both = part.clamped(to: clash)
                throw DistributedError("markReady: elements \(both) of the gradient buffer were already marked "
                    + "ready in this step (bucket \(i)); each gradient element must be marked exactly once per step")
            }
        }
        var completed: [Int] = []
        for i in span {
            let part = r.clamped(to: layout.range(ofBucket: i))
            pieces[i].append(part)
            marked[i] += part.count
            if isComplete(i) { completed.append(i) }
        }
        return completed
    }

    /// Elements not yet marked, as maximal ranges in increasing order (for error messages).
    func missing(limit: Int = 4) -> [Range<Int>] {
        var out: [Range<Int>] = []
        func add(_ r: Range<Int>) {
            if let last = out.last, last.upperBound == r.lowerBound { out[out.count - 1] = last.lowerBound..<r.upperBound }
            else { out.append(r) }
        }
        for i in stride(from: layout.bucketCount - 1, through: 0, by: -1) where !isComplete(i) {
            if out.count > limit { break }
            var at = layout.range(ofBucket: i).lowerBound
            for p in pieces[i].sorted(by: { $0.lowerBound < $1.lowerBound }) {
                if p.lowerBound > at { add(at..<p.lowerBound) }
                at = p.upperBound
            }
            if at < layout.range(ofBucket: i).upperBound { add(at..<layout.range(ofBucket: i).upperBound) }
        }
        return Array(out.prefix(limit))
    }

    /// Nil when every bucket is complete; else the error naming the elements never marked.
    func unmarkedError() -> DistributedError? {
        guard (0..<layout.bucketCount).contains(where: { !isComplete($0) }) else { return nil }
        return DistributedError("GradientReducer.finish: backward did not mark gradient elements "
            + "\(missing().map { "\($0)" }.joined(separator: ", ")) ready in this step; every element "
            + "of the buffer must be marked once (a parameter without gradient still needs its zeros marked)")
    }

    mutating func reset() {
        for i in 0..<marked.count { marked[i] = 0; pieces[i].removeAll(keepingCapacity: true) }
    }
}
