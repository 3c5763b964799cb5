import BordergateAudit
import Foundation
import NIOCore

/// Everything the proxy needs to know about one redirected connection before it dials: where the
/// tool wanted to go and who the tool is. Produced by a ``ConnectionResolver``.
public struct ProxiedConnection: Sendable {
    public var connectionID: String
    /// The original destination, as the proxy must dial it.
    public var target: SocketAddress
    public var process: AuditEvent.Process
    public var destination: AuditEvent.Destination
    public var policy: String
    public var reason: String
    /// When the tool called connect().
    public var connectedAt: Date
    public var rule: String?
    /// nil: relay at once. Otherwise the verdict waits for the hostname: the proxy reads the
    /// tool's first bytes (TLS SNI, HTTP Host), within a cap and a time limit, and asks.
    public var decide: (@Sendable (_ host: HostObservation) -> ProxyVerdict)?
    /// Set when the connection is refused before anything is read (the reason for the event):
    /// the resolver found its record but cannot vouch that it is this connection's.
    public var refusal: String?
    /// What the connection needs beyond its bytes relayed; anything but ``InspectionPlan/none``
    /// takes it off the epoll relay and through a ``ProtocolHandler``.
    public var inspection = InspectionPlan.none

    public init(connectionID: String, target: SocketAddress, process: AuditEvent.Process,
                destination: AuditEvent.Destination, policy: String, reason: String, connectedAt: Date) {
        self.connectionID = connectionID
        self.target = target
        self.process = process
        self.destination = destination
        self.policy = policy
        self.reason = reason
        self.connectedAt = connectedAt
    }
}

/// What the first bytes said about the hostname.
public enum HostObservation: Sendable, Equatable {
    case name(String)
    /// Nothing to read: the protocol carries no hostname (SSH, a TLS ClientHello without SNI,
    /// HTTP without Host), or the tool sent nothing before the time limit.
    case none
    /// It looked like TLS or HTTP but could not be read (malformed, over the cap, cut off): the
    /// hostname is unknown, and a verdict that depends on it is refused.
    case unreadable
}

/// The proxy's verdict on a connection that waited for its hostname.
public struct ProxyVerdict: Sendable {
    public var relay: Bool
    /// For the event: `redirect` (relayed), `deny` (refused here), `audit` (would be refused; relayed).
    public var verdict: Verdict
    public var reason: String
    public var policy: String
    public var rule: String?
    /// The destination with host and region filled in.
    public var destination: AuditEvent.Destination

    public init(relay: Bool, verdict: Verdict, reason: String, policy: String, rule: String?, destination: AuditEvent.Destination) {
        self.relay = relay
        self.verdict = verdict
        self.reason = reason
        self.policy = policy
        self.rule = rule
        self.destination = destination
    }
}

/// Finds the original destination and identity of an accepted connection by the client's address
/// and port (in Bordergate: the kernel's `orig_by_tuple` map). Called once per connection on an
/// event loop, so it must be quick and must not block.
public protocol ConnectionResolver: Sendable {
    func resolve(client: SocketAddress) -> ProxiedConnection?
}

/// Where the proxy sends its events.
public protocol ProxyEventSink: Sendable {
    func publish(_ event: AuditEvent)
}

extension AuditHub: ProxyEventSink {}

extension ProxiedConnection {
    /// A close event's `error` when the original destination could not be reached.
    func dialFailure(_ why: String) -> String {
        "connecting to \(destination.ip) port \(destination.port): \(why)"
    }
}
