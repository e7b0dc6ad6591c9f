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
    /// What became of the row table: "matches the shards", "absent …", "rebuilt", or the problem.
    public var rowTable = "not checked"
    public var rowTableBad = false
    public var ok: Bool { badSamples == 0 && badShards == 0 && !rowTableBad }

    mutating func add(_ p: String, limit: Int) {
        if problems.count < limit { problems.append(p) } else { problemsNotListed += 1 }
    }
}

public func verifyStore(directory: String, checksums: Bool = true, maxProblems: Int = 50, rebuildRowTable: Bool = false,
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
    try checkRowTable(store, &report, rebuild: rebuildRowTable, maxProblems: maxProblems)
    return report
}

/// Checks the row table against the shards (by building it afresh and comparing every
/// byte), and rebuilds it when asked and the shards passed.
private func checkRowTable(_ store: FeatureStore, _ report: inout VerifyReport, rebuild: Bool, maxProblems: Int) throws {
    let path = store.directory + "/" + RowTableFormat.fileName
    let exists = FileManager.default.fileExists(atPath: path)
    let shardsOK = report.badShards == 0 && report.badSamples == 0
    if exists && shardsOK {
        let fresh = path + ".verify"
        defer { unlink(fresh) }
        do {
            _ = try RowTable(path: path, directory: store.directory, manifest: store.manifest)
            if try !RowTableBuilder.write(directory: store.directory, manifest: store.manifest, to: fresh) {
                throw StoreError("\(path): the store's features cannot be read from mappings (compressed or filtered chunks), so it should have no row table; delete it")
            }
            guard FileManager.default.contentsEqual(atPath: path, andPath: fresh) else {
                throw StoreError("\(path): differs from the table the shard files give (damaged, or the shards changed after it was written). Rebuild it with `\(RowTableFormat.rebuildHint(store.directory))`")
            }
            report.rowTable = "matches the shards"
        } catch {
            report.rowTable = "damaged or out of date"
            report.rowTableBad = !rebuild
            if !rebuild { report.add("\(error)", limit: maxProblems) }
        }
    } else if exists {
        report.rowTable = "not checked (the shards have problems)"
    } else {
        report.rowTable = "absent (loads read through HDF5; add one with --rebuild-row-table)"
    }
    guard rebuild else { return }
    guard shardsOK else {
        report.rowTable += "; not rebuilt: fix the problems above first"
        return
    }
    if try RowTableBuilder.write(directory: store.directory, manifest: store.manifest) {
        report.rowTable = "rebuilt (\(path))"
    } else {
        report.rowTable = "not built: the store's features cannot be read from mappings (compressed or filtered chunks); loads read through HDF5"
    }
}
