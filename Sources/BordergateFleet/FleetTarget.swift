import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// Where the fleet's events go: a PostgreSQL URL (`postgresql://user:password@host:port/db?sslmode=...`)
/// and a table, as `export: {postgres: {url, table}}` names them.
public struct FleetTarget: Sendable, Equatable {
    public var url: String
    public var table: String

    public static let defaultTable = "bordergate_events"

    public init(url: String, table: String = FleetTarget.defaultTable) {
        self.url = url
        // checked again here, not only in the config: the name goes into SQL text
        self.table = Self.isIdentifier(table) ? table : Self.defaultTable
    }

    /// The table's name as SQL writes it: quoted, so a reserved word is a name too.
    var quotedTable: String { "\"\(table)\"" }

    /// Why `url` or `table` cannot be used, or nil: for config errors at their line.
    public static func problem(url: String, table: String) -> String? {
        if (try? configuration(url: url)) == nil {
            return "'\(redacted(url))' is not a PostgreSQL URL; expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]"
        }
        if !isIdentifier(table) {
            return "table '\(table)' is not a plain SQL name; expected lower-case letters, digits and _, starting with a letter"
        }
        return nil
    }

    /// The table name goes into SQL text (PostgreSQL cannot bind identifiers): only plain names.
    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, ("a"..."z").contains(first), s.count <= 63 else { return false }
        return s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// The URL with its password hidden, for messages.
    public static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url) else {
            // unparsable: whatever stands between the scheme and the last @ may be a password
            guard let scheme = url.range(of: "://"), let at = url.range(of: "@", options: .backwards),
                  scheme.upperBound <= at.lowerBound else { return url }
            return url[..<scheme.upperBound] + "***" + url[at.lowerBound...]
        }
        guard c.password != nil else { return url }
        c.password = "***"
        return c.string ?? url
    }

    struct BadURL: Error {}

    static func configuration(url: String) throws -> PostgresClient.Configuration {
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgresql", "postgres"].contains(scheme),
              let host = c.host, !host.isEmpty, let user = c.user, !user.isEmpty else { throw BadURL() }
        let database = c.path.hasPrefix("/") && c.path.count > 1 ? String(c.path.dropFirst()) : user
        let tls: PostgresClient.Configuration.TLS
        // require by default: prefer would go on in cleartext when anyone in the path answers N
        switch c.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "require" {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        default: throw BadURL()
        }
        var config = PostgresClient.Configuration(host: host, port: c.port ?? 5432, username: user,
                                                  password: c.password, database: database, tls: tls)
        config.options.connectTimeout = .seconds(5)
        config.options.maximumConnections = 2
        return config
    }

    func client(logger: Logger) throws -> PostgresClient {
        PostgresClient(configuration: try Self.configuration(url: url), backgroundLogger: logger)
    }

    /// The table, made if missing: one row per event and host, the log's line exactly as written
    /// (so the chain can be verified from the table) and as jsonb for queries. One statement
    /// each: the extended protocol takes one per query.
    var schema: [String] {
        ["""
        CREATE TABLE IF NOT EXISTS \(quotedTable) (
            host text NOT NULL,
            seq bigint NOT NULL,
            time timestamptz NOT NULL,
            type text NOT NULL,
            verdict text,
            line text NOT NULL,
            event jsonb NOT NULL,
            exported_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (host, seq)
        )
        """, "CREATE INDEX IF NOT EXISTS \"\(table)_time\" ON \(quotedTable) (time)"]
    }
}
