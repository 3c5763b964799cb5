import BordergateAudit

// Sides and endings of a proxied connection are the audit vocabulary's own (`Side`,
// `ConnectionEnding` in BordergateAudit): the proxy reports them as they are.

/// The protocols the proxy recognises from a connection's first bytes: the keys protocol handlers
/// register under. An event names them as its `WireProtocol`.
public enum ProxyProtocol: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Bytes the proxy does not read (or could not recognise).
    case tcp
    case tls
    case http
    case postgresql

    public var description: String { rawValue }

    /// What the sniffer's answer says the connection speaks.
    public init(_ sniffed: SniffedProtocol) {
        switch sniffed {
        case .tls: self = .tls
        case .http: self = .http
        case .postgresql: self = .postgresql
        case .needMoreBytes, .other, .malformed: self = .tcp
        }
    }
}

extension WireProtocol {
    /// The event's word for what the proxy recognised.
    public init(_ spoken: ProxyProtocol) {
        switch spoken {
        case .tcp: self = .tcp
        case .tls: self = .tls
        case .http: self = .http
        case .postgresql: self = .postgresql
        }
    }
}
