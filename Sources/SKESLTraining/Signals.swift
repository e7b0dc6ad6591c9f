// SIGINT / SIGTERM ask the run to stop after the current step and write a final
// checkpoint; a second signal exits at once.
import Foundation

nonisolated(unsafe) private var stopSignals: Int32 = 0

public enum StopSignal {
    public static func install() {
        for s in [SIGINT, SIGTERM] {
            signal(s) { sig in
                stopSignals += 1
                if stopSignals > 1 { _exit(128 + sig) }
            }
        }
    }
    public static var requested: Bool { stopSignals > 0 }
    public static func reset() { stopSignals = 0 }
}

/// Shard files are read through memory mappings (docs/feature-store.md, "Reading rows"): a
/// file truncated under a running job, or a disk error on one of its pages, then arrives as
/// SIGBUS instead of a read error. This turns it into a plain message and exit code 135.
public enum MappedFileFault {
    public static func install() {
        signal(SIGBUS) { _ in
            let msg = "skesl: bus error reading a memory-mapped store file: a shard was truncated or replaced, or its disk returned an I/O error, while this run had it open. Checkpoints already written are intact. Check the store with `skesl store verify STORE`, then rerun the same command to resume from the newest checkpoint.\n"
            msg.withCString { p in _ = write(2, p, strlen(p)) }
            _exit(135)
        }
    }
}
