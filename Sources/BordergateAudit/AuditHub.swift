import Foundation

/// Where every event goes: appended to the durable ``AuditLog`` and fanned out live to every
/// subscriber (`bordergate events -f`).
///
/// Publishing never waits for a subscriber. Each has a bounded queue; when a slow reader lets it
/// fill, further events are dropped for that reader only and counted, and the reader is told how
/// many it missed before its next event.
public final class AuditHub: @unchecked Sendable {
    /// What a subscriber receives.
    public enum Item: Sendable {
        case event(AuditEvent, line: Data)
        case missed(Int)
    }

    public final class Subscription: @unchecked Sendable {
        public let items: AsyncStream<Item>
        /// Everything in the log before this offset predates the subscription; everything after
        /// arrives through `items`. Reading history up to here and then `items` leaves no gap.
        public let historyEnd: UInt64
        fileprivate let continuation: AsyncStream<Item>.Continuation
        fileprivate let filter: EventFilter
        fileprivate var missed = 0
        fileprivate let id: Int

        fileprivate init(id: Int, filter: EventFilter, capacity: Int, historyEnd: UInt64) {
            self.id = id
            self.filter = filter
            self.historyEnd = historyEnd
            (items, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(capacity))
        }

        /// Ends the subscription (its reader went away); the hub forgets it.
        public func cancel() {
            continuation.finish()
        }

        /// Called with the hub's lock held.
        fileprivate func deliver(_ event: AuditEvent, line: Data) {
            guard filter.matches(event) else { return }
            if missed > 0 {
                if case .dropped = continuation.yield(.missed(missed)) {
                    missed += 1
                    return
                }
                missed = 0
            }
            if case .dropped = continuation.yield(.event(event, line: line)) {
                missed += 1
            }
        }
    }

    public let log: AuditLog
    private let lock = NSLock()
    private var subscribers: [Int: Subscription] = [:]
    private var nextID = 0
    private var published: UInt64 = 0
    private var writeFailures: UInt64 = 0
    private var lastWriteError: String?

    public init(log: AuditLog) {
        self.log = log
    }

    /// Records an event: to the log, then to every live subscriber.
    public func publish(_ event: AuditEvent) {
        let line = event.jsonLine()
        lock.withLock {
            do {
                try log.append(line)
            } catch {
                // A full disk must not stop the guard: keep serving live readers, count the loss.
                writeFailures += 1
                lastWriteError = "\(error)"
            }
            published += 1
            for s in subscribers.values { s.deliver(event, line: line) }
        }
    }

    /// A live view of future events matching `filter`, holding up to `capacity` undelivered ones.
    public func subscribe(filter: EventFilter = EventFilter(), capacity: Int = 4096) -> Subscription {
        lock.withLock {
            nextID += 1
            let s = Subscription(id: nextID, filter: filter, capacity: capacity, historyEnd: log.currentSize)
            subscribers[s.id] = s
            let id = s.id
            s.continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
            return s
        }
    }

    private func unsubscribe(_ id: Int) {
        lock.withLock { _ = subscribers.removeValue(forKey: id) }
    }

    public var subscriberCount: Int { lock.withLock { subscribers.count } }

    public struct Counters: Sendable, Codable {
        public var published: UInt64
        public var writeFailures: UInt64
        public var lastWriteError: String?
    }

    public var counters: Counters {
        lock.withLock { Counters(published: published, writeFailures: writeFailures, lastWriteError: lastWriteError) }
    }

    /// Ends every subscription and flushes the log.
    public func shutdown() {
        let subs = lock.withLock { () -> [Subscription] in
            let s = Array(subscribers.values)
            subscribers.removeAll()
            return s
        }
        subs.forEach { $0.continuation.finish() }
        log.syncIfDirty()
    }
}
