/// The two ends of a proxied connection.
public enum ConnectionSide: String, Sendable, CustomStringConvertible {
    /// The tool whose connection was redirected.
    case client
    /// The original destination.
    case server

    public var description: String { rawValue }
}

/// How a proxied connection ended, as its `close` event says it (`end`).
public enum ConnectionEnd: Sendable, Equatable, CustomStringConvertible {
    /// That side sent EOF first; the other followed.
    case closedBy(ConnectionSide)
    /// That side failed (typically a reset); the other was reset too.
    case resetBy(ConnectionSide)
    /// The original destination could not be reached.
    case upstreamFailed
    /// The proxy could not go on (a socket it could not watch, a pipeline it could not build).
    case proxyError
    /// The proxy stopped while the connection was open.
    case proxyStopped

    public var description: String {
        switch self {
        case .closedBy(let side): "closed by \(side)"
        case .resetBy(let side): "reset by \(side)"
        case .upstreamFailed: "upstream-failed"
        case .proxyError: "proxy-error"
        case .proxyStopped: "proxy stopped"
        }
    }
}

/// The protocol a connection speaks, as far as the proxy knows it (an event's `protocol`).
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
