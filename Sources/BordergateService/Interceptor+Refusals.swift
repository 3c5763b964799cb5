import BordergateAudit
import BordergateKernel
import BordergatePolicy
import CBordergateABI
import Foundation
import Logging

/// What the kernel aggregated or lost, turned into audit events: refusal counts per process,
/// destination and second (bordergate_abi.h, BG_REFUSAL_EVENTS_PER_SECOND), refusals past a
/// cgroup's budget of events, and failed ring-buffer reservations per class.
final class RefusalReporter: @unchecked Sendable {
    /// The kernel's key of a refusal count: the first refusal's event carries the same fields.
    struct Key: Hashable {
        var cgroupID: UInt64
        var second: UInt64
        var destination: KernelAddress
        var port: UInt16
        var ipProtocol: UInt32
        var family: UInt16
        var tgid: UInt32
    }

    private let lock = NSLock()
    /// One sweep at a time: a key's count must be reported by one of them.
    private let sweepLock = NSLock()
    /// The audit event of each key's first refusal, so its count is reported in the same words.
    private var firsts: [Key: AuditEvent] = [:]
    /// Refusals of a key already reported (its first event included) by a sweep of a second
    /// that was not over yet (``Interceptor/reportRefusalsSoFar()``).
    private var reported: [Key: UInt64] = [:]
    /// As many as `refusals_seen` holds keys: more would be keys the kernel already evicted.
    static let maxFirsts = 16_384
    private var drops: (events: UInt64, refusals: UInt64, host: UInt64)

    /// `baseline`: the kernel's drop counters now; earlier drops belong to whoever read the rings then.
    /// Source-routed packets dropped at egress, as last reported.
    private var sourceRouted: UInt64

    init(baseline: (events: UInt64, refusals: UInt64), sourceRouted: UInt64 = 0) {
        drops = (baseline.events, baseline.refusals, 0)
        self.sourceRouted = sourceRouted
    }

    /// Source-routed packets dropped since the last call.
    func newSourceRouted(_ now: UInt64) -> UInt64 {
        lock.withLock {
            let delta = now &- sourceRouted
            sourceRouted = now
            return delta
        }
    }

    func noteFirst(_ e: KernelConnectEvent, _ event: AuditEvent) {
        let key = Key(cgroupID: e.identity.cgroupID, second: e.identity.monotonicNanos / 1_000_000_000,
                      destination: e.destination, port: e.port, ipProtocol: e.ipProtocol, family: e.family,
                      tgid: e.identity.tgid)
        lock.withLock {
            // the kernel's LRU may evict keys the sweep never sees: their firsts must not pile up
            if firsts.count >= Self.maxFirsts { firsts.removeAll(keepingCapacity: true) }
            firsts[key] = event
        }
    }

    static func key(_ c: RefusalCount) -> Key {
        Key(cgroupID: c.cgroupID, second: c.second, destination: c.destination, port: c.port,
            ipProtocol: c.ipProtocol, family: c.family, tgid: c.tgid)
    }

    /// The key's first event and the refusals not reported yet; with `done` the key is forgotten
    /// (the kernel's entry was taken).
    func unreported(_ c: RefusalCount, done: Bool) -> (first: AuditEvent?, count: UInt64) {
        let key = Self.key(c)
        return lock.withLock {
            let already = reported[key] ?? (c.firstReported ? 1 : 0)
            let first: AuditEvent?
            if done {
                reported.removeValue(forKey: key)
                first = firsts.removeValue(forKey: key)
            } else {
                if reported.count >= Self.maxFirsts { reported.removeAll(keepingCapacity: true) }
                reported[key] = max(already, c.count)
                first = firsts[key]
            }
            return (first, c.count > already ? c.count - already : 0)
        }
    }

    func sweeping(_ body: () -> Void) {
        sweepLock.withLock(body)
    }

    /// Drops since the last call: (events ring, refusals ring, the daemon's own reader).
    func newDrops(_ now: (events: UInt64, refusals: UInt64), host: UInt64) -> (events: UInt64, refusals: UInt64, host: UInt64) {
        lock.withLock {
            let delta = (now.events &- drops.events, now.refusals &- drops.refusals, host &- drops.host)
            drops = (now.events, now.refusals, host)
            return delta
        }
    }
}

extension Interceptor {
    /// The config's `proxy:` limits, for the kernel to enforce at connect.
    func applyProxyLimits() throws {
        let p = residency.config.config.proxy
        try kernel.setProxyLimits(perCgroup: p.maxConnectionsPerCgroup, perUID: p.maxConnectionsPerUID)
        // each proxied connection holds two descriptors: a limit past the daemon's own lets one
        // user's connections starve everyone's
        var lim = rlimit()
        let largest = [p.maxConnectionsPerCgroup, p.maxConnectionsPerUID].filter { $0 > 0 }.min()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0, largest.map({ UInt64($0) * 2 >= UInt64(lim.rlim_cur) }) ?? true {
            logger.warning("proxy: a user may hold \(largest.map(String.init) ?? "unlimited") proxied connections, and the daemon's open-file limit \(lim.rlim_cur) allows about \(lim.rlim_cur / 2): set max-connections-per-uid lower")
        }
    }

    /// How often the kernel's refusal counts and drop counters are read.
    static let refusalSweepInterval: Duration = .seconds(1)

    /// Reports refusal counts and drops every second until cancelled or stopped.
    func runRefusalSweep() async {
        while !isStopping && !Task.isCancelled {
            try? await Task.sleep(for: Self.refusalSweepInterval)
            guard !isStopping && !Task.isCancelled else { break }
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Self.sweepQueue.async { [self] in
                    sweepRefusals(final: false)
                    done.resume()
                }
            }
        }
    }

    static let sweepQueue = DispatchQueue(label: "bg-refusal-sweep")

    /// Publishes the counts of every second at least two behind the kernel's clock (no refusal of
    /// those is still being counted), or with `final` of every second (the daemon stops).
    func sweepRefusals(final: Bool) {
        refusalReporter.sweeping { sweepLocked(final: final) }
    }

    /// What the kernel counted so far in seconds not swept yet, without taking it: a reader of the
    /// history right after a refusal (`events`, `exec`'s summary) finds every refusal before it.
    func reportRefusalsSoFar() {
        refusalReporter.sweeping {
            for c in kernel.peekRefusalCounts() { publishRefusals(c, done: false) }
        }
    }

    private func publishRefusals(_ c: RefusalCount, done: Bool) {
        let (first, more) = refusalReporter.unreported(c, done: done)
        guard more > 0 else { return }
        var e = first ?? auditEvent(forRefusal: c)
        e.id = AuditEvent.newID()
        e.time = Date()
        e.connection = nil
        e.count = more
        e.message = "\(more) \(first != nil || c.firstReported ? "more " : "")refusal\(more == 1 ? "" : "s") of this process to this destination in one second, counted in the kernel"
        hub.publish(e)
    }

    private func sweepLocked(final: Bool) {
        let now = KernelGuard.monotonicSecond()
        let (counts, overflows) = kernel.takeRefusalCounts(before: final ? .max : now &- 1)
        for c in counts { publishRefusals(c, done: true) }
        for o in overflows {
            var raw = bg_connect_event()
            raw.id.cgroup_id = o.cgroupID
            raw.id.tgid = o.tgid
            raw.id.pid = o.pid
            raw.id.uid = o.uid
            raw.id.time_ns = o.second &* 1_000_000_000
            let first = KernelConnectEvent(raw)
            hub.publish(AuditEvent(type: .connect, verdict: .deny,
                                   reason: "more than \(BG_REFUSAL_EVENTS_PER_SECOND) processes and destinations of the cgroup were refused in one second",
                                   process: describer.describe(first.identity, ppid: 0, exe: ""),
                                   policy: residency.policy(slot: o.policySlot)?.name,
                                   message: "\(o.count) refusal\(o.count == 1 ? "" : "s") counted in the kernel without naming each destination (the process is the first of them)",
                                   count: o.count))
        }
        let d = refusalReporter.newDrops(kernel.ringDrops(), host: reader?.droppedInHost ?? 0)
        if d.events > 0 {
            hub.publish(AuditEvent(type: .drop, reason: "kernel events ring full",
                                   message: "\(d.events) pass, audit or redirect event\(d.events == 1 ? " was" : "s were") lost: the kernel's events ring buffer was full (the daemon fell behind)",
                                   count: d.events))
        }
        if d.refusals > 0 {
            hub.publish(AuditEvent(type: .drop, reason: "kernel refusals ring full",
                                   message: "\(d.refusals) refusal event\(d.refusals == 1 ? "" : "s") could not be queued: the kernel's refusals ring buffer was full; the refusals themselves are in the counts reported for their destinations",
                                   count: d.refusals))
        }
        let routed = refusalReporter.newSourceRouted(kernel.sourceRoutedDrops())
        if routed > 0 {
            // the egress hook counts per packet; who sent them is not known there
            hub.publish(AuditEvent(type: .connect, verdict: .deny, reason: "source-routed packets dropped",
                                   message: "\(routed) packet\(routed == 1 ? "" : "s") of guarded cgroups carried an IPv6 routing header or an IPv4 source route (sendmsg control data) and were dropped at egress",
                                   count: routed))
        }
        if d.host > 0 {
            hub.publish(AuditEvent(type: .drop, reason: "daemon event queue full",
                                   message: "\(d.host) kernel event\(d.host == 1 ? " was" : "s were") lost in the daemon's reader",
                                   count: d.host))
        }
    }

    /// A refusal count whose first event never arrived (its ring was full, or an earlier daemon
    /// read it): described from the key, as the kernel's event would have been.
    func auditEvent(forRefusal c: RefusalCount) -> AuditEvent {
        var raw = bg_connect_event()
        raw.kind = UInt32(BG_EVENT_CONNECT.rawValue)
        raw.verdict = UInt32(BG_VERDICT_DENY.rawValue)
        raw.reason = c.reason
        raw.protocol = c.ipProtocol
        raw.id.cgroup_id = c.cgroupID
        raw.id.tgid = c.tgid
        raw.id.pid = c.pid
        raw.id.uid = c.uid
        raw.id.time_ns = c.second &* 1_000_000_000
        raw.dst.addr = c.destination.raw
        raw.dst.port = c.port
        raw.dst.family = c.family
        raw.policy_slot = c.policySlot
        raw.table_slot = BG_TABLE_SLOT_UNKNOWN
        return auditEvent(for: KernelConnectEvent(raw), verdict: .deny)
    }
}
