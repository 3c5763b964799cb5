import CBordergateABI
import CLibBPF
import Foundation

/// The kernel's refusal counts, its ring-buffer drops, and the proxied-connection limits
/// (bordergate_abi.h: BG_REFUSAL_EVENTS_PER_SECOND, bg_drop_class, bg_proxy_limits).
extension KernelGuard {
    /// Kernel counters, by name.
    public func counters() -> [String: UInt64] {
        [
            "connects_seen": stats.value(at: UInt32(BG_STAT_CONNECT_SEEN.rawValue)),
            "redirected": stats.value(at: UInt32(BG_STAT_REDIRECTED.rawValue)),
            "passed": stats.value(at: UInt32(BG_STAT_PASSED.rawValue)),
            "denied": stats.value(at: UInt32(BG_STAT_DENIED.rawValue)),
            "events_dropped": stats.value(at: UInt32(BG_STAT_EVENTS_DROPPED.rawValue)),
            "established_mapped": stats.value(at: UInt32(BG_STAT_ESTABLISHED_MAPPED.rawValue)),
            "loop_guard": stats.value(at: UInt32(BG_STAT_LOOP_GUARD.rawValue)),
            "udp_checked": stats.value(at: UInt32(BG_STAT_UDP_CHECKED.rawValue)),
            "udp_denied": stats.value(at: UInt32(BG_STAT_UDP_DENIED.rawValue)),
            "audited": stats.value(at: UInt32(BG_STAT_AUDITED.rawValue)),
            "sockets_refused": stats.value(at: UInt32(BG_STAT_SOCKETS_REFUSED.rawValue)),
            "events_ring_drops": eventDrops.value(at: UInt32(BG_DROP_EVENTS.rawValue)),
            "refusals_ring_drops": eventDrops.value(at: UInt32(BG_DROP_REFUSALS.rawValue)),
        ]
    }

    /// `BORDERGATE_TEST_REFUSALS_RING_BYTES` (a power of two, at least a page): a refusals ring
    /// that small, so the end-to-end tests can make it overflow. Maps pinned with another size are
    /// not reused, so only a fresh pin root takes it.
    static func applyTestRingSize(_ obj: OpaquePointer) {
        guard let text = ProcessInfo.processInfo.environment["BORDERGATE_TEST_REFUSALS_RING_BYTES"],
              let bytes = UInt32(text), bytes >= 4096, bytes & (bytes - 1) == 0,
              let map = bpf_object__find_map_by_name(obj, "refusals") else { return }
        bpf_map__set_max_entries(map, bytes)
    }

    /// Failed ring-buffer reservations so far, per class (cumulative over the pins' life).
    public func ringDrops() -> (events: UInt64, refusals: UInt64) {
        (eventDrops.value(at: UInt32(BG_DROP_EVENTS.rawValue)), eventDrops.value(at: UInt32(BG_DROP_REFUSALS.rawValue)))
    }

    /// Packets of guarded cgroups dropped at egress for a source route, so far (over the pins' life).
    public func sourceRoutedDrops() -> UInt64 { skbDrops.value(at: 0) }

    /// The kernel's clock for refusal seconds (bpf_ktime_get_ns is CLOCK_MONOTONIC).
    public static func monotonicSecond() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec)
    }

    /// Takes every refusal count and budget overflow of a second before `second`. Call it with a
    /// second at least two behind the clock: no refusal of a swept second is still being counted.
    public func takeRefusalCounts(before second: UInt64) -> (counts: [RefusalCount], overflows: [RefusalOverflow]) {
        var counts: [RefusalCount] = []
        for key in refusalCounts.keys() where key.second < second {
            if let v = refusalCounts.take(key) { counts.append(RefusalCount(key: key, value: v)) }
        }
        var overflows: [RefusalOverflow] = []
        for key in refusalBudgets.keys() where key.second < second {
            if let v = refusalBudgets.take(key), v.overflow > 0 {
                overflows.append(RefusalOverflow(cgroupID: key.cgroup_id, second: key.second, count: v.overflow,
                                                 tgid: v.tgid, pid: v.pid, uid: v.uid, policySlot: v.policy_slot))
            }
        }
        return (counts, overflows)
    }

    /// Every refusal count as it stands, left in place (the kernel may still be counting).
    public func peekRefusalCounts() -> [RefusalCount] {
        refusalCounts.keys().compactMap { k in refusalCounts.lookup(k).map { RefusalCount(key: k, value: $0) } }
    }

    /// How many proxied connections a cgroup and a user may hold at once (0: no limit). Redirects
    /// past either are refused at connect with BG_REASON_PROXY_LIMIT.
    public func setProxyLimits(perCgroup: UInt32, perUID: UInt32) throws {
        var l = bg_proxy_limits()
        l.per_cgroup = perCgroup
        l.per_uid = perUID
        try proxyLimits.update(0, l)
    }

    /// Live redirected sockets of a cgroup, as the kernel counts them for the limit.
    public func proxiedConnections(cgroupID: UInt64) -> UInt64 {
        var k = bg_live_key()
        k.id = cgroupID
        k.kind = UInt32(BG_LIVE_CGROUP.rawValue)
        return proxiedLive.lookup(k) ?? 0
    }

    /// Forgets a cgroup's count of live redirected sockets when its guard goes: its sockets'
    /// releases are no longer seen, so the count would only go stale.
    func forgetProxiedConnections(cgroupID: UInt64) {
        var k = bg_live_key()
        k.id = cgroupID
        k.kind = UInt32(BG_LIVE_CGROUP.rawValue)
        proxiedLive.delete(k)
    }
}

/// Refusals of one process to one destination in one second, beyond or including the one the
/// ring carried (``firstReported``).
public struct RefusalCount: Sendable, Equatable {
    public var cgroupID: UInt64
    public var second: UInt64
    public var destination: KernelAddress
    public var port: UInt16
    public var ipProtocol: UInt32
    public var family: UInt16
    public var tgid: UInt32
    public var pid: UInt32
    public var uid: UInt32
    public var policySlot: UInt32
    public var reason: UInt32
    public var count: UInt64
    /// The first refusal of the key is in the ring: the count beyond it is what is left to report.
    public var firstReported: Bool

    init(key: bg_refusal_key, value: bg_refusal_count) {
        cgroupID = key.cgroup_id
        second = key.second
        destination = KernelAddress(tuple: key.addr)
        port = key.port
        ipProtocol = UInt32(key.protocol)
        family = UInt16(key.family)
        tgid = key.tgid
        pid = value.pid
        uid = value.uid
        policySlot = value.policy_slot
        reason = value.reason
        count = value.count
        firstReported = value.flags & BG_REFUSAL_EMITTED != 0
    }
}

/// Refusals of a cgroup in one second past its budget of first-refusal events: counted only.
public struct RefusalOverflow: Sendable, Equatable {
    public var cgroupID: UInt64
    public var second: UInt64
    public var count: UInt64
    /// The process of the first refusal past the budget (others may have followed).
    public var tgid: UInt32
    public var pid: UInt32
    public var uid: UInt32
    public var policySlot: UInt32
}
