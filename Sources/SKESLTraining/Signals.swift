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
