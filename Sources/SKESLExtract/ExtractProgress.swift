// Progress of one rank's extraction: files done of its share, rate, ETA, bad files; one
// line at most every two seconds (and at the end), on stderr through the caller's log.
import Foundation

final class ExtractProgress {
    let rank: Int, size: Int, total: Int
    let log: (String) -> Void
    let start = Date()
    var done = 0, skippedDone = 0, bad = 0
    var lastPrint = Date.distantPast

    init(rank: Int, size: Int, files: Int, log: @escaping (String) -> Void) {
        self.rank = rank; self.size = size; total = files; self.log = log
    }

    /// Files of chunks finished by an earlier run.
    func skipped(_ n: Int) { skippedDone += n }

    func file(bad isBad: Bool) {
        done += 1
        if isBad { bad += 1 }
        if Date().timeIntervalSince(lastPrint) >= 2 { print() }
    }

    func line() -> String {
        let secs = Date().timeIntervalSince(start)
        let rate = secs > 0 ? Double(done) / secs : 0
        let left = total - done - skippedDone
        let eta = rate > 0 ? String(format: "%.0f s", Double(left) / rate) : "?"
        let pct = total > 0 ? 100 * Double(done + skippedDone) / Double(total) : 100
        let resumed = skippedDone > 0 ? ", \(skippedDone) done before" : ""
        return String(format: "extract rank %d/%d: %d/%d files (%.1f%%%@), %.2f files/s, ETA %@, %d bad", rank, size,
                      done + skippedDone, total, pct, resumed, rate, eta, bad)
    }

    func print() {
        lastPrint = Date()
        log(line())
    }

    func finish() { print() }
}
