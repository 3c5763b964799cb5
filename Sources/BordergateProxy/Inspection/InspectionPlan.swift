/// Which masking rules apply to a connection's content. Opaque to the proxy: the policy names
/// them and a protocol handler that masks resolves them.
public struct MaskingRulesReference: Sendable, Hashable {
    public let name: String
    public init(_ name: String) { self.name = name }
}

/// What a connection needs from the proxy beyond its bytes being relayed as they are. Carried
/// with the connection (``ProxiedConnection/inspection``) from the resolver to the protocol
/// handler; a connection whose plan is not ``isOpaque`` never reaches the epoll relay, which
/// cannot look at bytes.
public struct InspectionPlan: Sendable, Equatable {
    /// Terminate the tool's TLS and originate TLS to the destination, to see the plaintext.
    public var interceptTLS = false
    /// Mask content with these rules; nil masks nothing.
    public var masking: MaskingRulesReference?
    /// Record the conversation as evidence.
    public var record = false
    /// Decide SQL statements by these guardrails (the policy's `sql:`, by the policy's name);
    /// nil decides none.
    public var sql: MaskingRulesReference?
    /// The protocol handler to run; nil: the one registered for what the sniffer recognises.
    public var `protocol`: ProxyProtocol?
    /// What becomes of a connection whose protocol no registered handler can inspect this way
    /// (TLS that is not intercepted, SSH): refused (fail closed, the default), or relayed as it is
    /// with the `connect` event saying its content was not inspected.
    public var uninspectable = Uninspectable.refuse

    public enum Uninspectable: Sendable, Equatable { case refuse, relay }

    public init(interceptTLS: Bool = false, masking: MaskingRulesReference? = nil, record: Bool = false,
                sql: MaskingRulesReference? = nil, protocol: ProxyProtocol? = nil, uninspectable: Uninspectable = .refuse) {
        self.interceptTLS = interceptTLS
        self.masking = masking
        self.record = record
        self.sql = sql
        self.protocol = `protocol`
        self.uninspectable = uninspectable
    }

    /// Relay the bytes as they are.
    public static let none = InspectionPlan()

    /// Nothing to do but relay bytes: the connection may be spliced.
    public var isOpaque: Bool { !interceptTLS && masking == nil && !record && sql == nil && `protocol` == nil }
}

/// What the proxy does with an accepted connection, decided before anything is read.
enum ConnectionRoute {
    /// Reset at once; the reason is for the event.
    case refuse(ProxiedConnection, reason: String)
    /// Relay the bytes as they are, on the epoll engine.
    case splice(SpliceRoute)
    /// Read the first bytes (for the verdict, the protocol, or both), then run a protocol handler
    /// on NIO channels.
    case inspect(ProxiedConnection)

    init(_ connection: ProxiedConnection) {
        if let refusal = connection.refusal {
            self = .refuse(connection, reason: refusal)
        } else if connection.decide == nil, connection.inspection.isOpaque {
            self = .splice(SpliceRoute(connection: connection))
        } else {
            self = .inspect(connection)
        }
    }
}

/// A connection allowed onto the epoll relay. Only ``ConnectionRoute`` makes one, so a connection
/// that needs its bytes looked at cannot be spliced by mistake.
struct SpliceRoute {
    let connection: ProxiedConnection
    fileprivate init(connection: ProxiedConnection) { self.connection = connection }
}
