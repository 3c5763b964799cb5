import Foundation

/// Refusals held back while the audit writer's queue is full (``AuditHub``): one entry per
/// process, destination, protocol and reason, with a count, so a flood of refusals costs a
/// bounded amount of memory and cannot push pass and redirect events out of the queue. Past
/// ``maxKeys`` entries only a count is kept, reported as a `drop` event.
struct RefusalCoalescer {
    struct Key: Hashable {
        var cgroup: String?
        var pid: Int?
        var ip: String?
        var port: Int?
        var proto: WireProtocol?
        var reason: String?
        var policy: String?

        init(_ e: AuditEvent) {
            cgroup = e.process?.cgroup
            pid = e.process?.pid
            ip = e.destination?.ip
            port = e.destination?.port
            proto = e.protocol
            reason = e.reason
            policy = e.policy
        }
    }

    let maxKeys: Int
    /// The first refusal of each key (its time, process and destination stand for all) and how
    /// many refusals the key holds.
    private var entries: [Key: (event: AuditEvent, count: UInt64)] = [:]
    private var order: [Key] = []
    /// Refusals that found no room for a key of their own.
    private(set) var overflow: UInt64 = 0

    init(maxKeys: Int = 1024) {
        self.maxKeys = max(1, maxKeys)
    }

    var isEmpty: Bool { order.isEmpty && overflow == 0 }

    /// What the hub may coalesce: refused connections. Pass and redirect events never are.
    static func isRefusal(_ e: AuditEvent) -> Bool {
        e.type == .connect && e.verdict == .deny
    }

    mutating func add(_ e: AuditEvent) {
        let n = e.count ?? 1
        let key = Key(e)
        if let held = entries[key] {
            entries[key] = (held.event, held.count &+ n)
        } else if order.count < maxKeys {
            entries[key] = (e, n)
            order.append(key)
        } else {
            overflow &+= n
        }
    }

    /// The held refusals as events, in the order their keys arrived, and a `drop` event for the
    /// overflow; empties the coalescer.
    mutating func drain() -> [AuditEvent] {
        var out: [AuditEvent] = []
        out.reserveCapacity(order.count + 1)
        for key in order {
            guard let (first, n) = entries[key] else { continue }
            var e = first
            if n > 1 || first.count != nil {
                e.count = n
                let note = "\(n) refusals aggregated while the audit writer was behind"
                e.message = e.message.map { "\($0); \(note)" } ?? note
            }
            out.append(e)
        }
        if overflow > 0 {
            out.append(AuditEvent(type: .drop, reason: "audit writer queue full",
                                  message: "\(overflow) refusals were counted but not recorded one by one: the audit writer's queue was full and \(maxKeys) destinations were already held",
                                  count: overflow))
        }
        entries.removeAll(keepingCapacity: true)
        order.removeAll(keepingCapacity: true)
        overflow = 0
        return out
    }
}
