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
