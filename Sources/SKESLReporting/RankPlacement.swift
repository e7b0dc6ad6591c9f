// Where each rank runs: its host, the CPUs it may run on, and the physical core behind each
// CPU. On a node whose CPUs are hyperthreads (16 CPUs = 8 cores x 2), two ranks bound to
// sibling CPUs share one core's FMA units, and every rank of a 16-rank job may get half a
// core: the step times then show "imbalance" or slow compute that no change to the
// all-reduce can remove. Recording the placement in the run header and the metrics log's
// run_start (docs/metrics-log.md) makes that visible instead of a guess.
import Foundation

/// One rank's placement, read by the rank itself at start-up.
public struct RankPlacement: Codable, Equatable, Sendable {
    public var rank: Int
    public var host: String
    /// The CPUs the rank's process may run on (its affinity mask; all the host's CPUs when unbound).
    public var cpus: [Int]
    /// The physical core of each CPU in `cpus`, "package:core" (the same for hyperthread siblings).
    public var cores: [String]
    /// Online CPUs and physical cores of the host.
    public var hostCPUs: Int
    public var hostCores: Int
    /// Compute threads of the rank (train.threads).
    public var threads: Int
    /// The CPU quota of the rank's control group (CPUQuota), nil where none applies.
    public var quota: CPUQuota?
    /// The NUMA node of each CPU in `cpus`, and the host's NUMA nodes with CPUs; nil where the
    /// kernel shows none. A rank whose CPUs lie on two nodes finds half its memory remote.
    public var numa: [Int]?
    public var hostNUMANodes: Int?
    /// The world rank of the first rank on its host as MPI groups the ranks that share memory
    /// (MPI_Comm_split_type), which is how the shm sum and `train.allreduce: auto` count hosts;
    /// the report groups ranks by it, and by host name where it is nil (one rank, old logs).
    public var node: Int?

    enum CodingKeys: String, CodingKey {
        case rank, host, cpus, cores, hostCPUs = "host_cpus", hostCores = "host_cores", threads, quota = "cpu_quota",
             numa = "numa_nodes", hostNUMANodes = "host_numa_nodes", node
    }

    /// The host as the report groups ranks.
    var hostKey: String { node.map { "\u{1}\($0)" } ?? host }

    public init(rank: Int, host: String, cpus: [Int], cores: [String], hostCPUs: Int, hostCores: Int, threads: Int,
                quota: CPUQuota? = nil, numa: [Int]? = nil, hostNUMANodes: Int? = nil) {
        self.rank = rank; self.host = host; self.cpus = cpus; self.cores = cores
        self.hostCPUs = hostCPUs; self.hostCores = hostCores; self.threads = threads; self.quota = quota
        self.numa = numa; self.hostNUMANodes = hostNUMANodes
    }

    /// This process's placement, from `root`/proc/self/status and `root`/sys/devices/system/cpu
    /// (`root` is "" on a real machine; tests point it at a fixture tree). A CPU whose topology
    /// is not readable counts as a core of its own.
    public static func read(rank: Int, threads: Int, host: String = RankPlacement.hostName, root: String = "") -> RankPlacement {
        func text(_ path: String) -> String? {
            (try? String(contentsOfFile: root + path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let online = text("/sys/devices/system/cpu/online").flatMap(parseCPUList) ?? []
        let status = text("/proc/self/status") ?? ""
        let allowed = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            .flatMap { parseCPUList(String($0.dropFirst("Cpus_allowed_list:".count))) }
        // Only CPUs that are online: a mask may name CPUs that this host does not have.
        let isOnline = Set(online)
        let cpus = (allowed ?? online).filter { online.isEmpty || isOnline.contains($0) }
        // The host's CPUs (the rank's own where the online list is unreadable), each topology read once.
        let hostCPUs = online.isEmpty ? cpus : online
        let coreOf = Dictionary(uniqueKeysWithValues: hostCPUs.map { cpu -> (Int, String) in
            let base = "/sys/devices/system/cpu/cpu\(cpu)/topology/"
            guard let c = text(base + "core_id") else { return (cpu, "cpu\(cpu)") }
            return (cpu, (text(base + "physical_package_id") ?? "0") + ":" + c)
        })
        // NUMA nodes from /sys/devices/system/node/nodeN/cpulist (a node of memory alone lists none).
        var nodeOf: [Int: Int] = [:]
        let nodes = (try? FileManager.default.contentsOfDirectory(atPath: root + "/sys/devices/system/node")) ?? []
        for d in nodes where d.hasPrefix("node") {
            guard let n = Int(d.dropFirst(4)), let list = text("/sys/devices/system/node/\(d)/cpulist").flatMap(parseCPUList) else { continue }
            for cpu in list { nodeOf[cpu] = n }
        }
        return RankPlacement(rank: rank, host: host, cpus: cpus, cores: cpus.map { coreOf[$0]! },
                             hostCPUs: hostCPUs.count, hostCores: Set(coreOf.values).count, threads: threads,
                             quota: CPUQuota.read(root: root),
                             numa: nodeOf.isEmpty ? nil : cpus.map { nodeOf[$0] ?? -1 },
                             hostNUMANodes: nodeOf.isEmpty ? nil : Set(nodeOf.values).count)
    }

    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "unknown" }
        return String(cString: buf)
    }

    /// "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11]; nil when it is not such a list.
    public static func parseCPUList(_ s: String) -> [Int]? {
        var out: [Int] = []
        for part in s.trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard ends.allSatisfy({ $0 != nil }) else { return nil }
            switch ends.count {
            case 1: out.append(ends[0]!)
            case 2 where ends[0]! <= ends[1]!: out.append(contentsOf: ends[0]!...ends[1]!)
            default: return nil
            }
        }
        return out.isEmpty ? nil : out
    }
}

/// Every rank's placement and what it means for the step time: ranks that share a CPU,
/// ranks that share a physical core through hyperthread siblings, ranks left to roam the
/// whole host, ranks with more threads than CPUs, and ranks whose control group's CPU quota
/// is less than their threads need.
public struct PlacementReport: Codable, Equatable, Sendable {
    public var ranks: [RankPlacement]
    /// Pairs of ranks on one host whose CPU sets overlap (bound ranks only).
    public var sharedCPUs: [[Int]]
    /// Pairs of ranks on one host with no CPU in common but a physical core in common.
    public var sharedCores: [[Int]]
    /// Ranks that may run on every CPU of a host that runs more than one rank.
    public var unbound: [Int]
    /// Ranks with more compute threads than CPUs to run them on.
    public var threadsOverCPUs: [Int]
    /// Ranks in a control group whose CPU quota is below the compute threads of its ranks
    /// (they will be throttled); nil where no rank has a quota.
    public var overQuota: [Int]?
    /// Bound ranks whose CPUs lie on more than one NUMA node; nil where no rank knows its nodes.
    public var spanningNUMA: [Int]?
    /// The header line.
    public var summary: String

    enum CodingKeys: String, CodingKey {
        case ranks, sharedCPUs = "shared_cpus", sharedCores = "shared_cores", unbound,
             threadsOverCPUs = "threads_over_cpus", overQuota = "over_quota", spanningNUMA = "spanning_numa", summary
    }

    public init(_ ranks: [RankPlacement]) {
        self.ranks = ranks.sorted { $0.rank < $1.rank }
        let byHost = Dictionary(grouping: self.ranks, by: \.hostKey)
        var sharedCPUs: [[Int]] = [], sharedCores: [[Int]] = [], unbound: [Int] = []
        for (_, rs) in byHost {
            for r in rs where rs.count > 1 && r.cpus.count >= r.hostCPUs { unbound.append(r.rank) }
            let bound = rs.filter { !unbound.contains($0.rank) }
            for (i, a) in bound.enumerated() {
                for b in bound[(i + 1)...] {
                    if !Set(a.cpus).isDisjoint(with: b.cpus) { sharedCPUs.append([a.rank, b.rank]) }
                    else if !Set(a.cores).isDisjoint(with: b.cores) { sharedCores.append([a.rank, b.rank]) }
                }
            }
        }
        self.sharedCPUs = sharedCPUs.sorted { $0.lexicographicallyPrecedes($1) }
        self.sharedCores = sharedCores.sorted { $0.lexicographicallyPrecedes($1) }
        self.unbound = unbound.sorted()
        self.threadsOverCPUs = self.ranks.filter { $0.threads > $0.cpus.count }.map(\.rank)
        // Ranks on one host in one group share its quota.
        let limited = self.ranks.filter { $0.quota != nil }
        if !limited.isEmpty {
            let groups = Dictionary(grouping: limited) { $0.hostKey + "\u{0}" + $0.quota!.group }
            overQuota = groups.values.filter { rs in Double(rs.map(\.threads).reduce(0, +)) > rs[0].quota!.cpus }
                .flatMap { $0.map(\.rank) }.sorted()
        }
        if self.ranks.contains(where: { $0.numa != nil }) {
            spanningNUMA = self.ranks.filter { r in !unbound.contains(r.rank) && r.cpus.count < r.hostCPUs && Set(r.numa ?? []).count > 1 }
                .map(\.rank)
        }
        self.summary = ""
        self.summary = describe(byHost: byHost)
    }

    static func pairs(_ p: [[Int]]) -> String {
        p.prefix(4).map { "\($0[0])+\($0[1])" }.joined(separator: ", ") + (p.count > 4 ? ", ..." : "")
    }

    /// The header line, from the findings above.
    func describe(byHost: [String: [RankPlacement]]) -> String {
        let threads = Set(ranks.map(\.threads)).sorted().map(String.init).joined(separator: "/")
        var s = "\(ranks.count) rank\(ranks.count == 1 ? "" : "s") x \(threads) thread\(threads == "1" ? "" : "s") on "
        // Each host by its name; a name two hosts share (MPI tells them apart) gets its first rank.
        let names = Dictionary(grouping: byHost.keys) { byHost[$0]![0].host }
        func name(_ key: String) -> String {
            let r = byHost[key]!.min { $0.rank < $1.rank }!
            return names[r.host]!.count > 1 ? "\(r.host) (rank \(r.node ?? r.rank))" : r.host
        }
        let hosts = byHost.keys.map(name).sorted()
        let count = Dictionary(uniqueKeysWithValues: byHost.map { (name($0.key), $0.value.count) })
        if hosts.count == 1, let r = ranks.first {
            s += "\(r.host) (\(r.hostCPUs) CPUs = \(r.hostCores) cores x \(r.hostCPUs / max(r.hostCores, 1))"
                + ((r.hostNUMANodes ?? 1) > 1 ? ", \(r.hostNUMANodes!) NUMA nodes)" : ")")
        } else {
            s += "\(hosts.count) hosts (" + hosts.prefix(3).map { "\($0): \(count[$0]!)" }.joined(separator: ", ") + (hosts.count > 3 ? ", ..." : "") + ")"
        }
        // A rank allowed every CPU of its host is not bound, whether or not that matters.
        let widths = Set(ranks.filter { $0.cpus.count < $0.hostCPUs }.map(\.cpus.count)).sorted()
        if !widths.isEmpty { s += "; bound to " + widths.map(String.init).joined(separator: "/") + " CPU\(widths == [1] ? "" : "s") each" }
        var findings: [String] = []
        if !unbound.isEmpty { findings.append("\(unbound.count) rank(s) not bound to CPUs (they roam the host)") }
        if !sharedCPUs.isEmpty { findings.append("\(sharedCPUs.count) pair(s) of ranks share CPUs (\(Self.pairs(sharedCPUs)))") }
        if !sharedCores.isEmpty { findings.append("\(sharedCores.count) pair(s) of ranks share a physical core as hyperthread siblings (\(Self.pairs(sharedCores)))") }
        if !threadsOverCPUs.isEmpty { findings.append("\(threadsOverCPUs.count) rank(s) have more threads than CPUs") }
        if let span = spanningNUMA, !span.isEmpty {
            findings.append("\(span.count) rank(s) have CPUs on more than one NUMA node (memory on the other is remote)")
        }
        let quotas = Set(ranks.compactMap(\.quota?.description)).sorted()
        if !quotas.isEmpty {
            // A limit is worth naming where it is below the CPUs the ranks see; over them it changes nothing.
            let binding = ranks.contains { r in r.quota.map { $0.cpus < Double(r.cpus.count) } ?? false }
            if let over = overQuota, !over.isEmpty {
                findings.append("\(over.count) rank(s) need more CPUs than their control group's quota allows (\(quotas.prefix(2).joined(separator: ", "))\(quotas.count > 2 ? ", ..." : "")): the kernel will stop them in every period they exceed it")
            } else if binding {
                s += "; CPU quota " + quotas.prefix(2).joined(separator: ", ") + (quotas.count > 2 ? ", ..." : "")
            }
        }
        return s + (findings.isEmpty ? "; no two ranks share a core" : "; " + findings.joined(separator: "; "))
    }
}
