// Splitting, merging and resharding: stream one or more stores, block by block, into a
// new store of M shards of near-equal size. Memory is one block of rows, whatever the
// store's size.
import Foundation

/// Near-equal sizes of `shards` parts of `total` (the first ones take the remainder).
public func balancedShardSizes(total: Int, shards: Int) -> [Int] {
    (0..<shards).map { k in total / shards + (k < total % shards ? 1 : 0) }
}

public struct ReshardResult: Sendable {
    public var manifest: Manifest
    public var skipped: Int
}

@discardableResult
public func reshardStores(inputs: [String], output: String, shards: Int, layout: StoreLayout = .default,
                          skipBadSamples: Bool = false, overwrite: Bool = false,
                          log: (String) -> Void = { _ in }) throws -> ReshardResult {
    guard !inputs.isEmpty else { throw StoreError("give at least one input store") }
    guard shards >= 1 else { throw StoreError("the number of output shards must be at least 1 (got \(shards))") }
    let stores = try inputs.map { try FeatureStore(directory: $0) }
    let spec = stores[0].spec
    for s in stores.dropFirst() where s.spec != spec {
        throw StoreError("\(s.directory): features \(s.spec) differ from \(stores[0].directory)'s \(spec); only stores of the same shapes merge")
    }
    for s in stores {
        let o = (s.directory as NSString).standardizingPath, out = (output as NSString).standardizingPath
        if o == out { throw StoreError("\(output): the output directory is also an input; write to a new directory") }
    }
    let total = stores.reduce(0) { $0 + $1.count }
    guard shards <= max(total, 1) else { throw StoreError("cannot make \(shards) shards of \(total) samples; ask for at most \(total)") }
    let w = try StoreWriter(directory: output, name: stores.count == 1 ? stores[0].manifest.name : "merged",
                            spec: spec, samplesPerShard: max(1, (total + shards - 1) / shards), layout: layout,
                            labelRange: stores[0].manifest.labelRange, overwrite: overwrite,
                            createdBy: "skesl shard (\(inputs.count) input store(s), \(total) samples, \(shards) shards)",
                            shardSizes: balancedShardSizes(total: total, shards: shards))
    let block = max(1, min(256, (16 << 20) / max(spec.featureBytes, 1)))
    let batch = StoreBatch(capacity: block, spec: spec)
    var skipped = 0
    func copy(_ j: Int) throws {
        let L = spec.tokens ?? 0
        try w.append(utteranceId: batch.utteranceIds[j], transcript: batch.transcripts[j],
                     tokens: L > 0 ? UnsafeBufferPointer(start: batch.tokens!.baseAddress! + j * L, count: L) : nil,
                     tokenLength: L > 0 ? Int(batch.tokenLengths![j]) : 0,
                     audio: batch.audio.baseAddress! + j * spec.audioRow, audioLength: Int(batch.audioLengths[j]),
                     video: batch.video.baseAddress! + j * spec.videoRow, videoLength: Int(batch.videoLengths[j]),
                     label: batch.labels?[j], split: batch.splits.flatMap { Split(rawValue: $0[j]) })
    }
    for s in stores {
        for i in 0..<s.shardCount {
            let reader: ShardReader
            do { reader = try s.openShard(i, sequential: true) } catch {
                guard skipBadSamples else { throw error }
                skipped += s.manifest.shards[i].samples
                log("skipping all \(s.manifest.shards[i].samples) samples of \(s.shardPath(i)): \(error)")
                continue
            }
            var row = 0
            while row < reader.samples {
                let n = min(block, reader.samples - row)
                do {
                    try reader.read(row: row, count: n, into: batch, slot: 0)
                    for j in 0..<n { try copy(j) }
                } catch let p as SampleProblem {
                    guard skipBadSamples else { throw p }
                    for k in 0..<n {
                        do { try reader.read(row: row + k, count: 1, into: batch, slot: 0); try copy(0) } catch let q as SampleProblem {
                            skipped += 1
                            log("skipped bad sample: \(q.file): row \(q.row): \(q.reason)")
                        }
                    }
                }
                row += n
            }
        }
    }
    var m = try w.finish()
    if skipped > 0 {
        // Sizes were planned for all samples; the skipped ones leave the last shards short.
        m.createdBy = (m.createdBy ?? "") + ", \(skipped) bad samples skipped"
        try m.save(directory: output)
    }
    return ReshardResult(manifest: m, skipped: skipped)
}
