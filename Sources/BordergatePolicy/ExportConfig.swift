import Foundation
import Yams

/// `export: {postgres: {url: "postgresql://...", table: bordergate_events}}`: where the daemon ships
/// every event for the fleet view.
public struct ExportConfig: Sendable, Equatable {
    public var postgresURL: String
    public var table: String

    public init(postgresURL: String, table: String = "bordergate_events") {
        self.postgresURL = postgresURL
        self.table = table
    }
}

extension ConfigParser.Reader {
    func export(_ n: Node) throws -> ExportConfig? {
        if n.null != nil { return nil }
        var result: ExportConfig?
        for (key, k, v) in try mapping(n, "export") {
            switch key {
            case "postgres":
                var url: String?
                var table = "bordergate_events"
                for (pk, pkn, pv) in try mapping(v, "export.postgres") {
                    switch pk {
                    case "url":
                        let text = try string(pv, "export.postgres.url")
                        guard let c = URLComponents(string: text), ["postgresql", "postgres"].contains(c.scheme ?? ""),
                              !(c.host ?? "").isEmpty, !(c.user ?? "").isEmpty else {
                            throw fail(pv, "export.postgres.url is not a PostgreSQL URL; expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]")
                        }
                        let mode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
                        guard ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(mode) else {
                            throw fail(pv, "export.postgres.url has sslmode=\(mode); expected disable, prefer or require")
                        }
                        url = text
                    case "table":
                        table = try string(pv, "export.postgres.table")
                        let scalars = table.unicodeScalars
                        let plain = scalars.first.map { ("a"..."z").contains($0) } == true && scalars.count <= 63
                            && scalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
                        guard plain else {
                            throw fail(pv, "export.postgres.table '\(table)' is not a plain SQL name; expected lower-case letters, digits and _, starting with a letter")
                        }
                    default:
                        throw fail(pkn, "unknown key '\(pk)' in export.postgres; expected url or table")
                    }
                }
                guard let url else { throw fail(v, "export.postgres has no url; expected url: postgresql://USER@HOST/DATABASE") }
                result = ExportConfig(postgresURL: url, table: table)
            default:
                throw fail(k, "unknown key '\(key)' in export; expected postgres")
            }
        }
        return result
    }
}
