// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same value as zlib's
// crc32, Python's zlib.crc32 and `gzip`. Slicing-by-8 over 8 bytes per step, so that
// hashing a shard runs near memory speed; files are read in 4 MiB blocks.
#if canImport(Glibc)
import Glibc
#endif

private let crcTables: [UInt32] = {
    var t = [UInt32](repeating: 0, count: 8 * 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (0xEDB8_8320 ^ (c >> 1)) : (c >> 1) }
        t[i] = c
    }
    for i in 0..<256 {
        for k in 1..<8 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
    }
    return t
}()

/// Running CRC-32; start from 0, feed bytes in any split.
public struct CRC32 {
    public private(set) var value: UInt32 = 0
    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        var n = bytes.count
        var c = ~value
        crcTables.withUnsafeBufferPointer { tb in
            let t = tb.baseAddress!
            while n >= 8 {
                let lo = c ^ (UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24)
                let hi = UInt32(p[4]) | UInt32(p[5]) << 8 | UInt32(p[6]) << 16 | UInt32(p[7]) << 24
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                  ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                  ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                  ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                p += 8; n -= 8
            }
            while n > 0 {
                c = t[Int((c ^ UInt32(p[0])) & 0xFF)] ^ (c >> 8)
                p += 1; n -= 1
            }
        }
        value = ~c
    }

    public static func of(_ bytes: [UInt8]) -> UInt32 {
        var c = CRC32()
        bytes.withUnsafeBytes { c.update($0) }
        return c.value
    }

    /// CRC-32 and size of a whole file.
    public static func file(_ path: String) throws -> (crc: UInt32, bytes: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError("\(path): cannot open for reading (missing or no permission)") }
        defer { close(fd) }
        let block = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 64)
        defer { buf.deallocate() }
        var c = CRC32()
        var total = 0
        while true {
            let r = read(fd, buf, block)
            if r < 0 { throw StoreError("\(path): read error while computing its checksum") }
            if r == 0 { break }
            c.update(UnsafeRawBufferPointer(start: buf, count: r))
            total += r
        }
        return (c.value, total)
    }
}

/// "%08x" of a checksum, as the manifest stores it.
public func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}
