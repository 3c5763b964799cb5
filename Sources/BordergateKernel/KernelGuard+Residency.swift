import CBordergateABI
import CLibBPF
import Foundation

/// Where the residency core keeps compiled policies: slots of verdict rows, two pairs of region
/// tries, and which slots and pair each guarded cgroup reads. The kernel guard is the real one;
/// the protocol lets the core's slot allocation be tested in memory, without root.
public protocol PolicySlotStore: AnyObject, Sendable {
    /// How many policy slots there are, and how many region classes a slot holds.
    var policySlotCount: Int { get }
    var regionClassLimit: Int { get }
    /// The fingerprint of what each trie pair holds (0: empty or unknown).
    func tableFingerprints() -> [UInt64]
    func loadRegions(slot: Int, fingerprint: UInt64,
                     ipv4: [(address: UInt32, length: UInt8, regionClass: UInt32)],
                     ipv6: [(address: [UInt8], length: UInt8, regionClass: UInt32)]) throws
    func clearRegions(slot: Int)
    func writePolicy(slot: Int, rows: [KernelGuard.PolicyRow], fallback: KernelGuard.PolicyRow) throws
    func guardedSlots() -> [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)]
    func setCgroupPolicy(cgroupID: UInt64, policySlot: UInt32, tableSlot: UInt32, baseSlot: UInt32?, grantEnds: UInt64?) throws
    /// Bytes of memory the store uses, by part (for `status`).
    func residencyMemory() -> [String: UInt64]
}

extension KernelGuard: PolicySlotStore {
    public var policySlotCount: Int { Self.maxPolicySlots }
    public var regionClassLimit: Int { Self.maxRegionClasses }
}

/// The residency half of the kernel contract: region tries (two pairs, so a reload fills the idle
/// pair and then moves cgroups over) and compiled policy rows.
extension KernelGuard {
    public static let maxRegionClasses = Int(BG_MAX_CLASSES)
    public static let maxPolicySlots = Int(BG_MAX_POLICY_SLOTS)

    /// One compiled verdict: what TCP and UDP get for one region class under one policy.
    public struct PolicyRow: Sendable, Equatable {
        public var tcp: KernelVerdict
        public var udp: KernelVerdict
        public var tcpAudited: Bool
        public var udpAudited: Bool
        /// No event: traffic the policy allows and nobody needs to read about (loopback).
        public var quiet: Bool
        public var rule: UInt32

        public init(tcp: KernelVerdict, udp: KernelVerdict, tcpAudited: Bool = false, udpAudited: Bool = false,
                    quiet: Bool = false, rule: UInt32) {
            self.tcp = tcp
            self.udp = udp
            self.tcpAudited = tcpAudited
            self.udpAudited = udpAudited
            self.quiet = quiet
            self.rule = rule
        }

        var raw: bg_policy_row {
            var r = bg_policy_row()
            r.tcp = UInt8(tcp.raw)
            r.udp = UInt8(udp.raw)
            r.tcp_flags = (tcpAudited ? UInt8(BG_ROW_AUDIT) : 0) | (quiet ? UInt8(BG_ROW_QUIET) : 0)
            r.udp_flags = (udpAudited ? UInt8(BG_ROW_AUDIT) : 0) | (quiet ? UInt8(BG_ROW_QUIET) : 0)
            r.rule = rule
            return r
        }
    }

    /// The fingerprint of what each trie pair holds (0: empty or unknown).
    public func tableFingerprints() -> [UInt64] {
        let cfg = config.lookup(0) ?? bg_config()
        return [cfg.table_fingerprint.0, cfg.table_fingerprint.1]
    }

    /// Fills trie pair `slot` with the given prefixes, replacing what it held. The slot must not
    /// be in use by any cgroup. Returns the number of entries written.
    public func loadRegions(slot: Int, fingerprint: UInt64,
                            ipv4: [(address: UInt32, length: UInt8, regionClass: UInt32)],
                            ipv6: [(address: [UInt8], length: UInt8, regionClass: UInt32)]) throws {
        precondition(slot == 0 || slot == 1)
        try setFingerprint(slot: slot, 0) // half-filled tries are never trusted by a restart
        clear(regions4[slot])
        clear(regions6[slot])
        try regions4[slot].update(keys: ipv4.map { e in
            var k = bg_lpm4_key()
            k.prefixlen = UInt32(e.length)
            withUnsafeMutableBytes(of: &k.addr) { raw in
                withUnsafeBytes(of: e.address.bigEndian) { raw.copyMemory(from: $0) }
            }
            return k
        }, values: ipv4.map(\.regionClass))
        try regions6[slot].update(keys: ipv6.map { e in
            var k = bg_lpm6_key()
            k.prefixlen = UInt32(e.length)
            withUnsafeMutableBytes(of: &k.addr) { raw in
                e.address.withUnsafeBytes { raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(16))) }
            }
            return k
        }, values: ipv6.map(\.regionClass))
        try setFingerprint(slot: slot, fingerprint)
    }

    /// Empties trie pair `slot` (after every cgroup moved off it), giving its memory back.
    public func clearRegions(slot: Int) {
        try? setFingerprint(slot: slot, 0)
        clear(regions4[slot])
        clear(regions6[slot])
    }

    private func setFingerprint(slot: Int, _ value: UInt64) throws {
        var cfg = config.lookup(0) ?? bg_config()
        if slot == 0 { cfg.table_fingerprint.0 = value } else { cfg.table_fingerprint.1 = value }
        try config.update(0, cfg)
    }

    private func clear<K: BitwiseCopyable>(_ map: BPFMap<K, UInt32>) {
        // Deleting while walking restarts the walk from the first key each time.
        let next = UnsafeMutablePointer<K>.allocate(capacity: 1)
        defer { next.deallocate() }
        while bpf_map_get_next_key(map.fd, nil, next) == 0 {
            if bpf_map_delete_elem(map.fd, next) != 0 { break }
        }
    }

    /// Writes one compiled policy into `slot`: `rows[c]` is the verdict for region class c; classes
    /// past the end get `fallback` (fail closed: a deny).
    public func writePolicy(slot: Int, rows: [PolicyRow], fallback: PolicyRow) throws {
        precondition(slot >= 0 && slot < Self.maxPolicySlots)
        guard rows.count <= Self.maxRegionClasses else {
            throw KernelError("the region tables define \(rows.count) regions; the kernel holds at most \(Self.maxRegionClasses); load fewer tables")
        }
        let base = UInt32(slot * Self.maxRegionClasses)
        let fb = fallback.raw
        try policyRows.update(keys: (0..<UInt32(Self.maxRegionClasses)).map { base + $0 },
                              values: (0..<Self.maxRegionClasses).map { $0 < rows.count ? rows[$0].raw : fb })
    }

    /// Every guarded cgroup's policy slot, the slot it falls back to when a grant ends, and its trie pair.
    public func guardedSlots() -> [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)] {
        guardedCgroups().mapValues { (Int($0.policy_slot), Int($0.base_slot), Int($0.table_slot)) }
    }

    /// Points a guarded cgroup at a compiled policy and trie pair, in one map update. With a grant,
    /// `policySlot` holds the policy with it and the kernel itself falls back to `baseSlot` at
    /// `grantEnds` (``bootClockNanos()``), so the grant ends on time even without a daemon.
    public func setCgroupPolicy(cgroupID: UInt64, policySlot: UInt32, tableSlot: UInt32,
                                baseSlot: UInt32? = nil, grantEnds: UInt64? = nil) throws {
        var pol = bg_cgroup_policy()
        pol.policy_slot = policySlot
        pol.table_slot = tableSlot
        pol.base_slot = baseSlot ?? policySlot
        pol.expires_ns = grantEnds.map { max($0, 1) } ?? 0
        try guarded.update(cgroupID, pol)
    }

    /// CLOCK_BOOTTIME in nanoseconds, the clock the kernel ends grants by: unlike the wall clock
    /// it cannot be set back, and unlike CLOCK_MONOTONIC it counts time spent suspended.
    public static func bootClockNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Kernel memory of the region tries and policy rows, from the maps' fdinfo (bytes).
    public func residencyMemory() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (name, fd) in [("regions4_a", regions4[0].fd), ("regions4_b", regions4[1].fd),
                           ("regions6_a", regions6[0].fd), ("regions6_b", regions6[1].fd),
                           ("policy_rows", policyRows.fd)] {
            guard let text = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("memlock:") {
                out[name] = UInt64(line.dropFirst("memlock:".count).trimmingCharacters(in: .whitespaces))
            }
        }
        return out
    }
}

extension KernelVerdict {
    var raw: UInt32 {
        switch self {
        case .redirect: UInt32(BG_VERDICT_REDIRECT.rawValue)
        case .pass: UInt32(BG_VERDICT_PASS.rawValue)
        case .deny: UInt32(BG_VERDICT_DENY.rawValue)
        case .none: UInt32(BG_VERDICT_NONE.rawValue)
        }
    }
}
