import CBordergateSys
import Foundation
import Synchronization

/// Where every event goes: appended to the durable ``AuditLog`` and fanned out live to every
/// subscriber (`bordergate events -f`).
///
/// Publishing only queues the event: a writer thread of the hub's own encodes what has queued,
/// appends it with one write, and then hands it to subscribers, so a subscriber never sees an
/// event the log does not hold. The writer gathers for at most ``batchWindow`` after the first
/// event of a batch, so a burst of connections costs a few writes rather than two per
/// connection, and the threads that relay traffic never wait on the disk.
///
/// The queue is bounded (``capacity``). Refusals are coalesced (``RefusalCoalescer``: one event
/// per process and destination, with a count) once it is half full, so a flood of refused connects
/// cannot crowd out pass and redirect events; those are never dropped: past the capacity their
/// publisher waits for the writer (back-pressure onto the kernel's rings and the proxy).
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
        func deliver(_ event: AuditEvent, line: Data) {
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
    /// How long the writer lets events gather before it writes them.
    /// Each write costs the file system more than the bytes in it (ext4 prepares the page for a
    /// partial write every time), so fewer, larger writes; a live reader sees events this much later.
    public static let batchWindow: Duration = .milliseconds(5)
    /// Guards the queue and everything the writer touches.
    let lock = NSCondition()
    private var queue: [AuditEvent] = []
    /// Events the queue may hold; refusals are coalesced past half of it.
    public let capacity: Int
    private var coalescer = RefusalCoalescer()
    private var coalesced: UInt64 = 0
    private var writing = false
    private var writerWaiting = false
    private var stopping = false
    private var writerRunning = false
    var subscribers: [Int: Subscription] = [:]
    private var nextID = 0
    private var published: UInt64 = 0
    private var writeFailures: UInt64 = 0
    private var lastWriteError: String?
    /// Set while the log cannot be written (AuditHub+Outage.swift).
    var outage: LogOutage?
    let blocked = Atomic<Bool>(false)
    /// Told when the log stops taking writes (the error) and when it takes them again (nil); on
    /// the writer thread, so it must be quick (``setWritabilityHandler(_:)``; read with the lock).
    var onWritabilityChange: (@Sendable (_ problem: String?) -> Void)?

    public init(log: AuditLog, capacity: Int = 65_536) {
        self.log = log
        self.capacity = max(2, capacity)
        writerRunning = true
        let t = Thread { [self] in
            bg_name_thread("bg-audit-writer") // what top -H and perf show
            Thread.current.isAuditWriter = true
            writeLoop()
        }
        t.start()
    }

    /// Records an event: queued for the log, then for every live subscriber. Never blocks on I/O,
    /// except a non-refusal published while the queue is full, which waits for the writer.
    public func publish(_ event: AuditEvent) {
        lock.lock()
        if RefusalCoalescer.isRefusal(event) && queue.count >= capacity / 2 {
            coalescer.add(event)
            coalesced &+= 1
        } else {
            while queue.count >= capacity && writerRunning && !stopping && !Thread.current.isAuditWriter {
                lock.wait()
            }
            queue.append(event)
        }
        let wake = writerWaiting
        lock.unlock()
        // publishers waiting for room share the condition: wake the writer whichever waits
        if wake { lock.broadcast() }
    }

    /// Returns once everything published before the call is in the log (and with subscribers).
    public func flush() {
        lock.lock()
        while !queue.isEmpty || !coalescer.isEmpty || writing { lock.wait() }
        lock.unlock()
    }

    private func writeLoop() {
        var block: [UInt8] = []
        var lines: [Range<Int>] = []
        lock.lock()
        while true {
            var retryDue = false
            while queue.isEmpty && coalescer.isEmpty && !stopping && !retryDue {
                writerWaiting = true
                if outage != nil {
                    // nothing may come to write while the guard refuses: retry on a timer
                    retryDue = !lock.wait(until: Date().addingTimeInterval(Self.outageRetry))
                } else {
                    lock.wait()
                }
                writerWaiting = false
            }
            if queue.isEmpty && coalescer.isEmpty && stopping { break }
            if !stopping {
                // let a burst gather: one write for all of it
                lock.unlock()
                let w = Self.batchWindow.components
                usleep(UInt32(w.seconds * 1_000_000 + w.attoseconds / 1_000_000_000_000))
                lock.lock()
            }
            var batch = queue
            queue.removeAll(keepingCapacity: true)
            if !coalescer.isEmpty { batch += coalescer.drain() }
            writing = true
            lock.broadcast() // room in the queue for waiting publishers
            lock.unlock()
            // One buffer for the batch, kept between batches: no allocation per event. The log
            // encodes and chains into it.
            var failure: String?
            // after an outage, its record goes first; until that is written, nothing else is tried
            let recovered = endOutageIfWritable(into: &block, lines: &lines)
            if case .stillFailing(let error) = recovered {
                failure = error
            } else {
                do { try log.appendEvents(batch, into: &block, lines: &lines) } catch { failure = "\(error)" }
            }
            lock.lock()
            let change = noteWriteResult(failure: failure, events: batch.count, recovered: recovered)
            if let failure {
                // Live readers are still served and the loss counted; meanwhile the outage
                // (AuditHub+Outage.swift) has guarded connections refused.
                writeFailures += UInt64(batch.count)
                lastWriteError = failure
            }
            published += UInt64(batch.count)
            if !subscribers.isEmpty {
                for (i, event) in batch.enumerated() {
                    let line: Data
                    if i < lines.count {
                        line = Data(block[lines[i]])
                    } else {
                        // the batch failed before this event was encoded: readers still get it,
                        // without a seal (it is not in the log)
                        var unsealed: [UInt8] = []
                        event.appendJSON(to: &unsealed)
                        line = Data(unsealed)
                    }
                    for s in subscribers.values { s.deliver(event, line: line) }
                }
            }
            writing = false
            lock.broadcast()
            if let change, let tell = onWritabilityChange {
                lock.unlock()
                tell(change)
                lock.lock()
            }
        }
        writerRunning = false
        lock.broadcast()
        lock.unlock()
    }

    /// A live view of future events matching `filter`, holding up to `capacity` undelivered ones.
    public func subscribe(filter: EventFilter = EventFilter(), capacity: Int = 4096) -> Subscription {
        // Events still queued are not history yet: they reach the subscriber live. A batch being
        // written is both (the log holds it, and it is delivered live next): wait it out.
        lock.lock()
        defer { lock.unlock() }
        while writing { lock.wait() }
        nextID += 1
        let s = Subscription(id: nextID, filter: filter, capacity: capacity, historyEnd: log.currentSize)
        subscribers[s.id] = s
        let id = s.id
        s.continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        return s
    }

    private func unsubscribe(_ id: Int) {
        lock.withLock { _ = subscribers.removeValue(forKey: id) }
    }

    public var subscriberCount: Int { lock.withLock { subscribers.count } }

    /// Events published and not written yet (the log's lag, for `/metrics`).
    public var queuedCount: Int { lock.withLock { queue.count } }

    public struct Counters: Sendable, Codable {
        public var published: UInt64
        public var writeFailures: UInt64
        public var lastWriteError: String?
        /// Refusals coalesced because the queue was at least half full.
        public var coalesced: UInt64 = 0
    }

    public var counters: Counters {
        lock.withLock { Counters(published: published, writeFailures: writeFailures, lastWriteError: lastWriteError, coalesced: coalesced) }
    }

    /// Writes what is queued, stops the writer, ends every subscription and syncs the log.
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.broadcast()
        while writerRunning { lock.wait() }
        lock.unlock()
        let subs = lock.withLock { () -> [Subscription] in
            let s = Array(subscribers.values)
            subscribers.removeAll()
            return s
        }
        subs.forEach { $0.continuation.finish() }
        // sign what the last checkpoint did not cover, so a stopped daemon's log is sealed
        try? log.checkpoint()
        log.syncIfDirty()
    }
}

extension Thread {
    /// Set on the hub's writer thread, which must never wait for room in its own queue.
    fileprivate var isAuditWriter: Bool {
        get { threadDictionary["bordergate.audit-writer"] as? Bool ?? false }
        set { threadDictionary["bordergate.audit-writer"] = newValue }
    }
}
