import Foundation
import Synchronization

/// A stretch of time the audit log could not be written (a full disk, a read-only remount).
///
/// Fail closed: while it lasts the hub says so (``AuditHub/isWritable``, ``AuditHub/onWritabilityChange``)
/// and the daemon refuses every guarded connection it would have to record. The writer retries
/// every ``AuditHub/outageRetry`` even when nothing is published, and the first write that
/// succeeds is a chained `daemon` event saying when it began, why, and how many events were not
/// recorded: the gap is in the evidence, not only in the daemon's memory. Lines already in the log
/// are untouched (a partly written batch is cut off again, ``AuditLog``), so nothing acknowledged is lost.
struct LogOutage: Sendable {
    var since: Date
    var error: String
    var lost: UInt64
}

extension AuditHub {
    /// How often the writer tries the log again while it cannot write.
    static let outageRetry: TimeInterval = 1

    /// Sets (or with nil removes) what is told when the log stops or starts taking writes again:
    /// the error, or nil. Called on the writer thread, without the hub's lock.
    public func setWritabilityHandler(_ handler: (@Sendable (_ problem: String?) -> Void)?) {
        lock.withLock { onWritabilityChange = handler }
    }

    /// Whether the log takes writes. One atomic load: the proxy asks on every connection.
    public var isWritable: Bool { !blocked.load(ordering: .acquiring) }

    /// What `status` says of the log while it cannot be written: since when and why, and how many
    /// events were not recorded; nil when it can.
    public var outageSummary: String? {
        lock.withLock {
            outage.map { "cannot write since \(AuditTime.format($0.since)): \($0.error); \($0.lost) event(s) not recorded; guarded connections are refused until it can" }
        }
    }

    enum Recovery {
        case noOutage
        case recovered(AuditEvent, line: Data)
        case stillFailing(String)
    }

    /// With an outage on, writes its record (nothing else is tried until that is in the log).
    /// Writer thread, without the lock.
    func endOutageIfWritable(into block: inout [UInt8], lines: inout [Range<Int>]) -> Recovery {
        guard let o = lock.withLock({ outage }) else { return .noOutage }
        let event = AuditEvent(type: .daemon, verdict: .error, error: o.error, message:
            "the audit log could not be written from \(AuditTime.format(o.since)) to \(AuditTime.format(Date())): \(o.lost) event(s) were not recorded; guarded connections were refused meanwhile")
        do {
            try log.appendEvents([event], into: &block, lines: &lines)
        } catch {
            // its line is not in the log: nothing of it may pass for a line of the batch
            block.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
            return .stillFailing("\(error)")
        }
        return .recovered(event, line: lines.first.map { Data(block[$0]) } ?? Data())
    }

    /// Called with the lock held after a batch. Returns what to tell ``onWritabilityChange``:
    /// the error when an outage began, nil inside when it ended; nil outside when nothing changed.
    func noteWriteResult(failure: String?, events: Int, recovered: Recovery) -> String?? {
        if case .recovered(let event, let line) = recovered {
            outage = nil
            blocked.store(false, ordering: .releasing)
            for s in subscribers.values { s.deliver(event, line: line) }
            if failure == nil { return .some(nil) }
        }
        guard let failure else { return nil }
        if outage != nil {
            outage!.lost += UInt64(events)
            return nil
        }
        outage = LogOutage(since: Date(), error: failure, lost: UInt64(events))
        blocked.store(true, ordering: .releasing)
        return .some(failure)
    }
}
