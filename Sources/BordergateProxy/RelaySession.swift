import BordergateAudit
import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The life of one relayed connection: byte counts both ways and how it ended. When both sides
/// are closed it reports a single `close` event.
final class RelaySession: @unchecked Sendable {
    let connection: ProxiedConnection
    let sink: ProxyEventSink
    let counters: ProxyCounters
    private let started = ContinuousClock.now
    private let state = NIOLockedValueBox(State())

    struct State {
        var sent: UInt64 = 0
        var received: UInt64 = 0
        var openSides = 2
        var end: ConnectionEnding?
        var error: String?
        var firstClose: Side?
        var reported = false
    }

    init(connection: ProxiedConnection, sink: ProxyEventSink, counters: ProxyCounters) {
        self.connection = connection
        self.sink = sink
        self.counters = counters
    }

    func countSent(_ n: Int) {
        state.withLockedValue { $0.sent += UInt64(n) }
        counters.add(\.bytesSent, UInt64(n))
    }

    func countReceived(_ n: Int) {
        state.withLockedValue { $0.received += UInt64(n) }
        counters.add(\.bytesReceived, UInt64(n))
    }

    var bytes: AuditEvent.Bytes {
        state.withLockedValue { AuditEvent.Bytes(sent: $0.sent, received: $0.received) }
    }

    /// Records the first failure: it names how the connection ended.
    func fail(end: ConnectionEnding, error: String) {
        state.withLockedValue {
            if $0.end == nil {
                $0.end = end
                $0.error = error
            }
        }
    }

    /// A side is gone.
    func sideClosed(_ side: Side) {
        let report = state.withLockedValue { s -> State? in
            if s.firstClose == nil { s.firstClose = side }
            s.openSides -= 1
            guard s.openSides <= 0, !s.reported else { return nil }
            s.reported = true
            return s
        }
        guard let s = report else { return }
        counters.add(\.active, 0, subtracting: 1)
        sink.publish(Self.closeEvent(connection: connection, sent: s.sent, received: s.received, elapsed: ContinuousClock.now - started,
                                     end: s.end ?? .closedBy(s.firstClose ?? .client), error: s.error))
    }

    /// The `close` event of a relayed connection.
    static func closeEvent(connection: ProxiedConnection, sent: UInt64, received: UInt64, elapsed: Duration,
                           end: ConnectionEnding, error: String?) -> AuditEvent {
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return AuditEvent(
            type: .close, verdict: .redirect, process: connection.process,
            destination: connection.destination, protocol: .tcp, policy: connection.policy,
            rule: connection.rule, connection: connection.connectionID, bytes: .init(sent: sent, received: received),
            duration_ms: (ms * 1000).rounded() / 1000, end: end, error: error)
    }
}

/// Proxy-wide counters for `status`.
public final class ProxyCounters: Sendable {
    public struct Values: Sendable {
        public var accepted: UInt64 = 0
        public var active: UInt64 = 0
        public var unmapped: UInt64 = 0
        public var upstreamFailures: UInt64 = 0
        /// Refused by a hostname verdict.
        public var refused: UInt64 = 0
        public var bytesSent: UInt64 = 0
        public var bytesReceived: UInt64 = 0
    }

    private let box = NIOLockedValueBox(Values())

    public init() {}

    func add(_ key: WritableKeyPath<Values, UInt64>, _ n: UInt64, subtracting: UInt64 = 0) {
        box.withLockedValue {
            $0[keyPath: key] += n
            $0[keyPath: key] -= min(subtracting, $0[keyPath: key])
        }
    }

    func add(sent: UInt64, received: UInt64) {
        guard sent + received > 0 else { return }
        box.withLockedValue {
            $0.bytesSent += sent
            $0.bytesReceived += received
        }
    }

    public var values: Values { box.withLockedValue { $0 } }

    public var dictionary: [String: UInt64] {
        let v = values
        return ["accepted": v.accepted, "active": v.active, "unmapped": v.unmapped,
                "upstream_failures": v.upstreamFailures, "refused": v.refused, "bytes_sent": v.bytesSent, "bytes_received": v.bytesReceived]
    }
}
