// `store verify`: checks a whole store without trusting it: the manifest, each shard's
// size and CRC-32, its datasets (presence, shapes, types), its global offset, and every
// sample (lengths, NaN/Inf, empty transcripts, token ids, label range, split codes).
// Problems are collected (up to a limit), each naming the file and the sample.
import Foundation

public struct VerifyReport: Sendable {
    public var samplesChecked = 0
    public var badSamples = 0
    public var badShards = 0
    public var bytesHashed = 0
    public var problems: [String] = []
    public var problemsNotListed = 0
    public var ok: Bool { badSamples == 0 && badShards == 0 }

    mutating func add(_ p: String, limit: Int) {
        if problems.count < limit { problems.append(p) } else { problemsNotListed += 1 }
    }
}

public func verifyStore(directory: String, checksums: Bool = true, maxProblems: Int = 50,
                        progress: ((String) -> Void)? = nil) throws -> VerifyReport {
    let store = try FeatureStore(directory: directory)
    var report = VerifyReport()
    let spec = store.spec
    let block = max(1, min(256, (16 << 20) / max(spec.featureBytes, 1)))
    let batch = StoreBatch(capacity: block, spec: spec)
    var seenFiles = Set<String>()
    for (i, entry) in store.manifest.shards.enumerated() {
        let path = store.shardPath(i)
        if !seenFiles.insert(entry.file).inserted {
            report.badShards += 1
            report.add("\(store.directory)/manifest.json: shard \(entry.file) is listed twice", limit: maxProblems)
            continue
        }
        if checksums {
            do {
                let (crc, bytes) = try CRC32.file(path)
                report.bytesHashed += bytes
                if bytes != entry.bytes || hex32(crc) != entry.crc32.lowercased() {
                    report.badShards += 1
                    report.add("\(path): checksum mismatch: \(bytes) bytes with CRC-32 \(hex32(crc)), the manifest says \(entry.bytes) bytes with \(entry.crc32). The file changed since it was written: restore it or rebuild the store", limit: maxProblems)
                }
            } catch {
                report.badShards += 1
                report.add("\(path): missing; the manifest names it as shard \(i) with \(entry.samples) samples. Restore the file or rebuild the store", limit: maxProblems)
                continue
            }
        }
        let reader: ShardReader
        do { reader = try store.openShard(i, sequential: true) } catch {
            // A checksum mismatch already counted this shard.
            if !report.problems.contains(where: { $0.hasPrefix(path + ": checksum") }) { report.badShards += 1 }
            report.add("\(error)", limit: maxProblems)
            continue
        }
        if let off: Int64 = try? reader.file.attribute("global_offset"), off != store.offsets[i] {
            report.badShards += 1
            report.add("\(path): its global_offset attribute is \(off), its place in the manifest gives \(store.offsets[i]): shards listed out of order", limit: maxProblems)
        }
        var row = 0
        while row < entry.samples {
            let n = min(block, entry.samples - row)
            do {
                try reader.read(row: row, count: n, into: batch, slot: 0)
            } catch {
                // Re-check row by row to name every bad sample of the block.
                for k in 0..<n {
                    do { try reader.read(row: row + k, count: 1, into: batch, slot: 0) } catch {
                        report.badSamples += 1
                        report.add("\(error)", limit: maxProblems)
                    }
                }
            }
            report.samplesChecked += n
            row += n
        }
        progress?("\(entry.file): \(entry.samples) samples checked")
    }
    return report
}
