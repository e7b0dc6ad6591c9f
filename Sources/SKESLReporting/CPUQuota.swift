// The CPU time a rank's control group may use: a quota (Kubernetes CPU limits, `docker run
// --cpus`, systemd's CPUQuota=) caps a group's threads together at Q CPUs' worth of time per
// period (100 ms by default) on however many CPUs its affinity mask shows. When the group's
// threads (ranks x BLAS threads, plus every rank's loader and communication threads) want more
// than that, the kernel stops all of them until the next period: every rank stalls for tens of
// milliseconds, at random points of its step, and the others then wait for it in the
// all-reduce. Neither the affinity mask nor lscpu shows it, and from inside a rank it looks
// like a CPU taken by nobody. So each rank reads its group's quota at start-up (the placement
// report compares it with what the ranks need) and the group's throttled time at every step
// (StepTimer; docs/scaling.md, "A CPU quota").
import Foundation

public struct CPUQuota: Codable, Equatable, Sendable {
    /// CPUs' worth of time the group may use: quota / period.
    public var cpus: Double
    /// The group that sets the limit, as its hierarchy names it ("/kubepods/pod1/c1"); of the
    /// process's group and its ancestors, the one with the lowest limit.
    public var group: String
    /// "v2" (cpu.max) or "v1" (cpu.cfs_quota_us / cpu.cfs_period_us).
    public var version: String
    /// That group's cpu.stat, which counts the time its threads were held back.
    var statPath: String

    enum CodingKeys: String, CodingKey { case cpus, group, version }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cpus = try c.decode(Double.self, forKey: .cpus)
        group = try c.decode(String.self, forKey: .group)
        version = try c.decode(String.self, forKey: .version)
        statPath = ""
    }

    public init(cpus: Double, group: String, version: String, statPath: String = "") {
        self.cpus = cpus; self.group = group; self.version = version; self.statPath = statPath
    }

    /// The same limit, wherever this process found its counters (a decoded one has none).
    public static func == (a: CPUQuota, b: CPUQuota) -> Bool {
        a.cpus == b.cpus && a.group == b.group && a.version == b.version
    }

    /// The quota on this process's CPU time, from `root`/proc/self/cgroup, `root`/proc/self/mountinfo
    /// and the group files under the mount points they name (`root` is "" on a real machine; tests
    /// point it at a fixture tree); nil where no group of the process or its ancestors has one.
    public static func read(root: String = "") -> CPUQuota? {
        func text(_ path: String) -> String? { try? String(contentsOfFile: root + path, encoding: .utf8) }
        guard let groups = text("/proc/self/cgroup"), let mounts = text("/proc/self/mountinfo") else { return nil }
        let memberships = groups.split(separator: "\n").compactMap { line -> (id: String, controllers: [Substring], path: String)? in
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            return f.count == 3 ? (String(f[0]), f[1].split(separator: ","), String(f[2])) : nil
        }
        let mountList = mounts.split(separator: "\n").compactMap(Mount.init)
        // cgroup v2, where its cpu controller is on (cpu.max exists below the root); else v1's cpu hierarchy.
        if let m = memberships.first(where: { $0.id == "0" && $0.controllers.isEmpty }),
           let mount = mountList.first(where: { $0.type == "cgroup2" }),
           let q = lowest(path: m.path, mount: mount, version: "v2", root: root, limit: { dir in
               guard let f = text(dir + "/cpu.max")?.split(separator: " "), f.count == 2, let quota = Double(f[0]),
                     let period = Double(f[1].trimmingCharacters(in: .whitespacesAndNewlines)), period > 0 else { return nil }  // "max 100000": none
               return quota / period
           }) { return q }
        if let m = memberships.first(where: { $0.controllers.contains("cpu") }),
           let mount = mountList.first(where: { $0.type == "cgroup" && $0.options.contains("cpu") }),
           let q = lowest(path: m.path, mount: mount, version: "v1", root: root, limit: { dir in
               guard let quota = text(dir + "/cpu.cfs_quota_us").flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
                     let period = text(dir + "/cpu.cfs_period_us").flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
                     quota > 0, period > 0 else { return nil }                                         // -1: none
               return quota / period
           }) { return q }
        return nil
    }

    /// One line of mountinfo: "36 35 98:0 /root /mnt rw,noatime - cgroup cgroup rw,cpu,cpuacct".
    struct Mount {
        var root: String, point: String, type: String, options: [Substring]
        init?(_ line: Substring) {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { return nil }
            let a = halves[0].split(separator: " "), b = halves[1].split(separator: " ")
            guard a.count >= 5, b.count >= 3 else { return nil }
            root = Mount.unescape(a[3]); point = Mount.unescape(a[4]); type = String(b[0]); options = b[2].split(separator: ",")
        }
        /// mountinfo writes a space, tab, newline and backslash in a path as \040, \011, \012, \134.
        static func unescape(_ s: Substring) -> String {
            var out = "", i = s.startIndex
            while i < s.endIndex {
                if s[i] == "\\", let end = s.index(i, offsetBy: 4, limitedBy: s.endIndex),
                   let code = UInt8(s[s.index(after: i)..<end], radix: 8) {
                    out.append(Character(UnicodeScalar(code))); i = end
                } else { out.append(s[i]); i = s.index(after: i) }
            }
            return out
        }
    }

    /// The lowest limit of the group at `path` and its ancestors up to the mount's root. A
    /// container sees its own group as the mount's root: where the path is not under the
    /// mount's root (a cgroup namespace shows "/"), the mount point is the group itself.
    static func lowest(path: String, mount: Mount, version: String, root: String, limit: (String) -> Double?) -> CPUQuota? {
        let base = mount.root == "/" ? "" : mount.root
        var rel = path == "/" ? "" : path
        if !base.isEmpty {
            if rel == base { rel = "" } else if rel.hasPrefix(base + "/") { rel = String(rel.dropFirst(base.count)) } else { rel = "" }
        }
        var best: CPUQuota?
        while true {
            let dir = mount.point + rel
            if let cpus = limit(dir), cpus < (best?.cpus ?? .infinity) {
                best = CPUQuota(cpus: cpus, group: (base + rel).isEmpty ? "/" : base + rel, version: version,
                                statPath: root + dir + "/cpu.stat")
            }
            guard let slash = rel.lastIndex(of: "/") else { break }
            rel = String(rel[..<slash])
        }
        return best
    }

    /// Seconds the group's threads have been held back by the quota since it was made (cpu.stat:
    /// v2's throttled_usec, v1's throttled_time in ns); nil where it cannot be read.
    public func throttledSeconds() -> Double? {
        guard !statPath.isEmpty, let s = try? String(contentsOfFile: statPath, encoding: .utf8) else { return nil }
        let (key, scale) = version == "v2" ? ("throttled_usec", 1e-6) : ("throttled_time", 1e-9)
        for line in s.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count == 2, f[0] == key, let v = Double(f[1]) { return v * scale }
        }
        return nil
    }

    /// "1.5 CPUs (cgroup v1 /skesl-test)".
    public var description: String {
        String(format: "%g CPU%@ (cgroup %@ %@)", cpus, cpus == 1 ? "" : "s", version, group)
    }
}
