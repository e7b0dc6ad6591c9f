// Activation memory: a bump allocator whose chunks are kept across steps. A step
// makes the same requests in the same order every time, so after the first step
// nothing is allocated (no allocation in the hot path).
import SKESLKernels

public final class Arena {
    private var chunks: [(ptr: UnsafeMutableRawPointer, size: Int)] = []
    private var chunk = 0
    private var used = 0
    private let chunkSize: Int

    public init(chunkBytes: Int = 64 << 20) { chunkSize = chunkBytes }
    deinit { for c in chunks { c.ptr.deallocate() } }

    /// Starts a new step: earlier pointers become invalid and memory is reused.
    public func reset() { chunk = 0; used = 0 }

    /// Total bytes held.
    public var capacity: Int { chunks.reduce(0) { $0 + $1.size } }

    public func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        let need = (max(bytes, 1) + 63) & ~63
        while true {
            if chunk < chunks.count {
                if used + need <= chunks[chunk].size {
                    let p = chunks[chunk].ptr + used
                    used += need
                    return p
                }
                // Too small for this request: try the next chunk (or add one after it).
                chunk += 1; used = 0
                continue
            }
            let size = max(need, chunkSize)
            chunks.append((UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), size))
        }
    }

    public func floats(_ n: Int) -> FPtr { raw(n * 4).bindMemory(to: Float.self, capacity: max(n, 1)) }
    public func bytes(_ n: Int) -> UnsafeMutablePointer<UInt8> { raw(n).bindMemory(to: UInt8.self, capacity: max(n, 1)) }
}
