import Foundation

/// Reconciles the two sightings of a redirected connection: the kernel's ring-buffer event (at
/// connect) and the proxy's accept. The proxy reports a connection it accepts; a kernel sighting
/// the proxy never claims (the tool gave up, or no daemon was listening) is reported after a grace
/// period, so no attempt goes unrecorded and none is recorded twice.
final class ConnectionLedger<Pending>: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [UInt64: (seen: ContinuousClock.Instant, value: Pending)] = [:]
    private var claimed: [UInt64: ContinuousClock.Instant] = [:]
    let grace: Duration

    init(grace: Duration = .seconds(5)) {
        self.grace = grace
    }

    /// The kernel saw a redirect. Returns false if the proxy already claimed it.
    func kernelSaw(cookie: UInt64, _ value: Pending) -> Bool {
        lock.withLock {
            if claimed.removeValue(forKey: cookie) != nil { return false }
            pending[cookie] = (ContinuousClock.now, value)
            return true
        }
    }

    /// The kernel saw a redirect the proxy already claimed: true, and the pair is settled.
    /// False means the sighting still has to go through ``kernelSaw(cookie:_:)``.
    func settleIfClaimed(cookie: UInt64) -> Bool {
        lock.withLock { claimed.removeValue(forKey: cookie) != nil }
    }

    /// The proxy accepted the connection.
    func proxyClaimed(cookie: UInt64) {
        lock.withLock {
            if pending.removeValue(forKey: cookie) == nil {
                claimed[cookie] = ContinuousClock.now
            }
        }
    }

    /// Kernel sightings older than the grace period, which the proxy never claimed.
    func expired(now: ContinuousClock.Instant = .now) -> [Pending] {
        lock.withLock {
            var out: [Pending] = []
            for (cookie, entry) in pending where now - entry.seen > grace {
                out.append(entry.value)
                pending.removeValue(forKey: cookie)
            }
            for (cookie, at) in claimed where now - at > .seconds(60) {
                claimed.removeValue(forKey: cookie)
            }
            return out
        }
    }

    /// Everything still pending, e.g. at shutdown.
    func drain() -> [Pending] {
        lock.withLock {
            let out = pending.values.map(\.value)
            pending.removeAll()
            return out
        }
    }
}
