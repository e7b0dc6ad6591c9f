// Vocabulary lookup keyed by runs of Unicode scalars, so that WordPiece can probe
// "does the vocabulary hold text[s..<e]?" straight from the normalised buffer
// without building a String per probe. Open addressing over FNV-1a hashes.
import SKESLKernels

struct ScalarTable: Sendable {
    fileprivate var keys: [UInt32] = []        // all keys, concatenated
    fileprivate var keyStart: [Int] = []
    fileprivate var keyLength: [Int] = []
    fileprivate var values: [Int32] = []
    fileprivate var slots: [Int32]             // index into values, -1 when empty
    private var mask: Int
    private(set) var maxKeyLength = 0

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: -1, count: n)
        mask = n - 1
    }

    static let hashSeed = FNV1a64.offsetBasis

    @inline(__always)
    static func step(_ h: UInt64, _ c: UInt32) -> UInt64 { FNV1a64.fold(h, UInt64(c)) }

    @inline(__always)
    static func finish(_ h: UInt64) -> Int {
        var x = h
        x ^= x >> 33
        x = x &* 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        return Int(truncatingIfNeeded: x)
    }

    /// Inserts or overwrites (the last value for a key wins, as a Python dict built line by line).
    mutating func insert<S: Sequence>(_ key: S, value: Int32) where S.Element == UInt32 {
        let k = Array(key)
        var h = ScalarTable.hashSeed
        for c in k { h = ScalarTable.step(h, c) }
        if values.count * 2 >= slots.count { grow() }
        let found = k.withUnsafeBufferPointer { probe($0.baseAddress!, k.count, hash: ScalarTable.finish(h)) }
        if found.index >= 0 { values[found.index] = value; return }
        keyStart.append(keys.count); keyLength.append(k.count)
        keys.append(contentsOf: k); values.append(value)
        slots[found.slot] = Int32(values.count - 1)
        maxKeyLength = max(maxKeyLength, k.count)
    }

    private mutating func grow() {
        let n = slots.count * 2
        slots = [Int32](repeating: -1, count: n)
        mask = n - 1
        for i in 0..<values.count {
            var h = ScalarTable.hashSeed
            for j in keyStart[i]..<(keyStart[i] + keyLength[i]) { h = ScalarTable.step(h, keys[j]) }
            var s = ScalarTable.finish(h) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(i)
        }
    }

    /// Slot of `key` (index >= 0 when present) or the free slot where it would go.
    @inline(__always)
    private func probe(_ p: UnsafePointer<UInt32>, _ n: Int, hash: Int) -> (slot: Int, index: Int) {
        var s = hash & mask
        while true {
            let i = Int(slots[s])
            if i < 0 { return (s, -1) }
            if keyLength[i] == n {
                let st = keyStart[i]
                var same = true
                var j = 0
                while j < n { if keys[st + j] != p[j] { same = false; break }; j += 1 }
                if same { return (s, i) }
            }
            s = (s + 1) & mask
        }
    }

    /// The value for p[0..<n], whose finished hash the caller computed with `step`/`finish`.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt32>, _ n: Int, hash: Int) -> Int32? {
        let r = probe(p, n, hash: hash)
        return r.index >= 0 ? values[r.index] : nil
    }

    func lookup(_ s: String) -> Int32? {
        let k = s.unicodeScalars.map { $0.value }
        var h = ScalarTable.hashSeed
        for c in k { h = ScalarTable.step(h, c) }
        return k.withUnsafeBufferPointer { b in
            b.baseAddress.flatMap { lookup($0, k.count, hash: ScalarTable.finish(h)) }
                ?? (k.isEmpty ? lookupEmpty() : nil)
        }
    }

    private func lookupEmpty() -> Int32? {
        var dummy: UInt32 = 0
        return withUnsafePointer(to: &dummy) { lookup($0, 0, hash: ScalarTable.finish(ScalarTable.hashSeed)) }
    }
}

/// The built table in plain memory, for lookups without reference counting in the
/// WordPiece loop (the tables never change after loading).
final class FrozenScalarTable: @unchecked Sendable {
    let keys: UnsafeMutablePointer<UInt32>
    let keyStart: UnsafeMutablePointer<Int>
    let keyLength: UnsafeMutablePointer<Int>
    let values: UnsafeMutablePointer<Int32>
    let slots: UnsafeMutablePointer<Int32>
    let mask: Int
    let maxKeyLength: Int

    init(_ t: ScalarTable) {
        func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBufferPointer { if let b = $0.baseAddress { p.initialize(from: b, count: a.count) } }
            return p
        }
        let parts = t.storage
        keys = copy(parts.keys); keyStart = copy(parts.keyStart); keyLength = copy(parts.keyLength)
        values = copy(parts.values); slots = copy(parts.slots)
        mask = parts.slots.count - 1
        maxKeyLength = t.maxKeyLength
    }

    deinit {
        keys.deallocate(); keyStart.deallocate(); keyLength.deallocate(); values.deallocate(); slots.deallocate()
    }

    /// The value for p[0..<n]; `hash` from `ScalarTable.step`/`finish` over the same scalars.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt32>, _ n: Int, hash: Int) -> Int32 {
        var s = hash & mask
        while true {
            let i = Int(slots[s])
            if i < 0 { return -1 }
            if keyLength[i] == n {
                let k = keys + keyStart[i]
                var j = 0
                while j < n && k[j] == p[j] { j += 1 }
                if j == n { return values[i] }
            }
            s = (s + 1) & mask
        }
    }
}

extension ScalarTable {
    var storage: (keys: [UInt32], keyStart: [Int], keyLength: [Int], values: [Int32], slots: [Int32]) {
        (keys, keyStart, keyLength, values, slots)
    }
}
