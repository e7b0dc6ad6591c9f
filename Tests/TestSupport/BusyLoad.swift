// Shared by the test targets: load that keeps the cores busy, for tests of races that
// only a loaded machine shows (a test must pass there, see scripts/stress).
import Foundation
import Synchronization

/// Threads that spin until stopped, to keep the cores busy during a test.
public final class BusyLoad: @unchecked Sendable {
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchGroup()

    public init(threads n: Int = max(2, ProcessInfo.processInfo.activeProcessorCount)) {
        for _ in 0..<n {
            done.enter()
            Thread { [self] in
                var x: UInt64 = 1
                while !stopping.load(ordering: .relaxed) { for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1 } }
                if x == 42 { print("") }   // keeps the loop from being optimised away
                done.leave()
            }.start()
        }
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        done.wait()
    }
}

