/// The closed vocabularies of an audit event. Each is a string in the JSON (the raw values below are
/// the released format and never change); inside Bordergate they are enums, so a misspelt verdict
/// does not compile. Every one keeps an `.other` case: a log written by another version may hold
/// a word this one does not know, and reading it must not fail.

/// What was decided about a connection, or what a policy event records.
public enum Verdict: Sendable, Hashable {
    /// Relayed through the proxy.
    case redirect
    /// Allowed directly.
    case pass
    case deny
    /// Would have been denied; the policy is in audit mode.
    case audit
    /// Policy events: a just-in-time exception began, or ended.
    case grant
    case grantExpired
    /// Policy events: a config or guard could not be applied.
    case error
    case other(String)

    /// The verdicts of connections, which `bordergate events --verdict` offers.
    public static let connectionVerdicts: [Verdict] = [.redirect, .pass, .deny, .audit]
    public static let known: [Verdict] = connectionVerdicts + [.grant, .grantExpired, .error]
}

extension Verdict: RawRepresentable {
    public init(rawValue: String) {
        switch rawValue {
        case "redirect": self = .redirect
        case "pass": self = .pass
        case "deny": self = .deny
        case "audit": self = .audit
        case "grant": self = .grant
        case "grant-expired": self = .grantExpired
        case "error": self = .error
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .redirect: "redirect"
        case .pass: "pass"
        case .deny: "deny"
        case .audit: "audit"
        case .grant: "grant"
        case .grantExpired: "grant-expired"
        case .error: "error"
        case .other(let s): s
        }
    }

    /// Refusals, and verdicts an auditor wants explained: their events carry a reason worth showing.
    public var isRefusalOrAudit: Bool { self == .deny || self == .audit }
}

/// One end of a relayed connection.
public enum Side: String, Sendable, Hashable, CaseIterable {
    /// The guarded tool.
    case client
    /// The original destination.
    case server
}

/// How a connection ended (close events).
public enum ConnectionEnding: Sendable, Hashable {
    /// An orderly close; the side that sent EOF first.
    case closedBy(Side)
    /// A reset (or another socket error) on this side; the other got a reset too.
    case resetBy(Side)
    /// The original destination could not be reached.
    case upstreamFailed
    /// The proxy could not relay (cannot watch sockets, cannot inspect, ...).
    case proxyError
    /// The proxy shut down with the connection open.
    case proxyStopped
    case other(String)
}

extension ConnectionEnding: RawRepresentable {
    public init(rawValue: String) {
        switch rawValue {
        case "closed by client": self = .closedBy(.client)
        case "closed by server": self = .closedBy(.server)
        case "reset by client": self = .resetBy(.client)
        case "reset by server": self = .resetBy(.server)
        case "upstream-failed": self = .upstreamFailed
        case "proxy-error": self = .proxyError
        case "proxy stopped": self = .proxyStopped
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .closedBy(.client): "closed by client"
        case .closedBy(.server): "closed by server"
        case .resetBy(.client): "reset by client"
        case .resetBy(.server): "reset by server"
        case .upstreamFailed: "upstream-failed"
        case .proxyError: "proxy-error"
        case .proxyStopped: "proxy stopped"
        case .other(let s): s
        }
    }
}

/// What a connection speaks, as far as Bordergate knows.
public enum WireProtocol: Sendable, Hashable {
    case tcp
    case udp
    /// Recognised by the proxy from the first bytes.
    case tls
    case http
    case postgresql
    case other(String)
}

extension WireProtocol: RawRepresentable {
    public init(rawValue: String) {
        switch rawValue {
        case "tcp": self = .tcp
        case "udp": self = .udp
        case "tls": self = .tls
        case "http": self = .http
        case "postgresql": self = .postgresql
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .tls: "tls"
        case .http: "http"
        case .postgresql: "postgresql"
        case .other(let s): s
        }
    }
}

/// A word of the audit vocabulary: encoded as its raw string (the standard library's coding of a
/// string-backed `RawRepresentable`), so the JSON stays what it was; since `init(rawValue:)` takes
/// any string, any string decodes. Printed as the same word.
public protocol AuditWord: RawRepresentable, Codable, CustomStringConvertible, Sendable where RawValue == String {}

extension AuditWord {
    public var description: String { rawValue }
}

extension Verdict: AuditWord {}
extension ConnectionEnding: AuditWord {}
extension WireProtocol: AuditWord {}
