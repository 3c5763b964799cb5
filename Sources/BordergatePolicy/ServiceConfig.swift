import Foundation
import Yams

/// `audit: {rotate: 100MiB, retain: 90d}`: the audit log moves to a new file past `rotate` bytes
/// (the chain continues into it), and whole files older than `retain` are removed (recorded in a
/// chained event). No key: one file, kept for ever.
public struct AuditLogConfig: Sendable, Equatable {
    /// Bytes; nil: never rotate.
    public var rotateBytes: UInt64?
    /// Seconds; nil: keep every file.
    public var retain: Double?

    public init(rotateBytes: UInt64? = nil, retain: Double? = nil) {
        self.rotateBytes = rotateBytes
        self.retain = retain
    }
}

/// `metrics: {listen: 127.0.0.1:9380}`: where `/metrics` is served, on loopback only.
public struct MetricsConfig: Sendable, Equatable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var listen: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension ConfigParser.Reader {
    func audit(_ n: Node) throws -> AuditLogConfig {
        var a = AuditLogConfig()
        if n.null != nil { return a }
        for (key, k, v) in try mapping(n, "audit") {
            switch key {
            case "rotate":
                let s = try string(v, "rotate")
                // below 64 KiB a file would hold a few hundred events: a typo, not a wish
                guard let b = ConfigParser.byteSize(s), b >= 64 << 10 else {
                    throw fail(v, "rotate is '\(s)'; expected a size of at least 64KiB such as 100MiB or 1GiB")
                }
                a.rotateBytes = b
            case "retain":
                let s = try string(v, "retain")
                guard let d = ConfigParser.duration(s), d > 0 else {
                    throw fail(v, "retain is '\(s)'; expected a duration such as 90d, 12h or 90m")
                }
                a.retain = d
            default:
                throw fail(k, "unknown key '\(key)' in audit; expected rotate or retain")
            }
        }
        return a
    }

    func metrics(_ n: Node) throws -> MetricsConfig? {
        if n.null != nil { return nil }
        var listen: (String, Node)?
        for (key, k, v) in try mapping(n, "metrics") {
            switch key {
            case "listen": listen = (try string(v, "listen"), v)
            default: throw fail(k, "unknown key '\(key)' in metrics; expected listen")
            }
        }
        guard let (text, node) = listen else { throw fail(n, "metrics needs 'listen:', e.g. listen: 127.0.0.1:9380") }
        guard let sep = text.lastIndex(of: ":"), let port = Int(text[text.index(after: sep)...]), (1...65535).contains(port) else {
            throw fail(node, "listen is '\(text)'; expected a loopback address and port such as 127.0.0.1:9380 or [::1]:9380")
        }
        var host = String(text[..<sep])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        // metrics say what is guarded and how much goes where: not for other hosts to read
        guard host == "::1" || host.hasPrefix("127.") && host.split(separator: ".").count == 4
                && host.split(separator: ".").allSatisfy({ UInt8($0) != nil }) else {
            throw fail(node, "listen is '\(text)'; metrics are served on loopback only: expected 127.0.0.1:PORT or [::1]:PORT")
        }
        return MetricsConfig(host: host, port: port)
    }
}
