// Minimal "--name value" parsing for the test executable.
import Foundation

struct Options {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    init(_ args: [String]) {
        var i = 0
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--") else { fail("unexpected argument \(a)") }
            let name = String(a.dropFirst(2))
            if i + 1 < args.count, !args[i + 1].hasPrefix("--") {
                values[name] = args[i + 1]; i += 2
            } else {
                flags.insert(name); i += 1
            }
        }
    }

    func int(_ name: String, _ fallback: Int) -> Int {
        guard let v = values[name] else { return fallback }
        guard let n = Int(v) else { fail("--\(name) needs an integer, got \(v)") }
        return n
    }

    func double(_ name: String, _ fallback: Double) -> Double {
        guard let v = values[name] else { return fallback }
        guard let n = Double(v) else { fail("--\(name) needs a number, got \(v)") }
        return n
    }

    func string(_ name: String, _ fallback: String) -> String { values[name] ?? fallback }

    func doubles(_ name: String, _ fallback: [Double]) -> [Double] {
        guard let v = values[name] else { return fallback }
        return v.split(separator: ",").map { s in
            guard let n = Double(s) else { fail("--\(name) needs numbers separated by commas, got \(v)") }
            return n
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }
}

func fail(_ message: String) -> Never {
    fputs("FAIL \(message)\n", stderr)
    print("FAIL \(message)")
    exit(1)
}

/// splitmix64: deterministic test data any rank can recompute for any other rank.
@inline(__always)
func mix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Gradient-like value of element i on `rank` at `step`: a full 24-bit
/// mantissa times 2^-12...2^7, so partial sums round and the summation order
/// shows in the last bit; or a small integer when sums must be exact whatever
/// the order.
@inline(__always)
func testValue(rank: Int, step: Int, index: Int, integers: Bool) -> Float {
    let h = mix(UInt64(index) &* 0x1_0000_0001 ^ UInt64(rank) << 48 ^ UInt64(step) << 40)
    if integers { return Float(Int(h % 2001) - 1000) }
    let mantissa = Float((h >> 40) | 1) / Float(1 << 24) * 2 - 1
    return Float(sign: .plus, exponent: Int((h >> 8) % 20) - 12, significand: mantissa)
}

/// IPv4 addresses of this process's network interfaces other than loopback:
/// shows which (namespace) host a rank runs in.
func interfaceAddresses() -> [String] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return [] }
    defer { freeifaddrs(list) }
    var out: [String] = []
    var p = list
    while let a = p {
        if let sa = a.pointee.ifa_addr, sa.pointee.sa_family == UInt16(AF_INET) {
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(sa, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0,
                           NI_NUMERICHOST) == 0 {
                let s = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !s.hasPrefix("127.") { out.append(s) }
            }
        }
        p = a.pointee.ifa_next
    }
    return out.sorted()
}
