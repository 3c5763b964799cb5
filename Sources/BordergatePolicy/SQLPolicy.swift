import Foundation
import Yams

/// A policy's `sql:` block: guardrails on PostgreSQL statements, decided by the PostgreSQL handler
/// on libpg_query's parse tree (issue 15's names):
///
/// ```yaml
/// sql:
///   deny: [drop, truncate, delete-without-where, {table: "payroll.*"}]
///   review: [alter, update-without-where]   # held until bordergate approve (or reject, or the timeout)
///   review-timeout: 5m
///   on-error: block                         # a statement that cannot be parsed or decided
/// ```
public struct SQLPolicy: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case drop, truncate, alter, grant
        case deleteWithoutWhere = "delete-without-where"
        case updateWithoutWhere = "update-without-where"
        case copyToProgram = "copy-to-program"
    }

    public enum Rule: Sendable, Equatable {
        case kind(Kind)
        /// A glob over `schema.table` (or a bare table name).
        case table(String)
    }

    public var deny: [Rule] = []
    public var review: [Rule] = []
    public var reviewTimeout: TimeInterval = 300
    public var onError: MaskPolicy.OnError = .block
    public var origin: String = ""

    public init() {}
}

extension ConfigParser.Reader {
    func sqlPolicy(_ n: Node, policy name: String) throws -> SQLPolicy {
        var s = SQLPolicy()
        s.origin = at(n)
        if n.scalar?.string == "" || n.null != nil { return s }
        for (key, k, v) in try mapping(n, "sql of policy \(name)") {
            switch key {
            case "deny", "review":
                let items = v.sequence ?? [v]
                let rules = try items.map { try sqlRule($0, in: "sql.\(key) of policy \(name)") }
                if key == "deny" { s.deny = rules } else { s.review = rules }
            case "review-timeout":
                let text = try string(v, "review-timeout")
                guard let d = ConfigParser.duration(text), d > 0 else {
                    throw fail(v, "review-timeout is '\(text)'; expected a duration such as 5m or 30s")
                }
                s.reviewTimeout = d
            case "on-error": s.onError = try choice(v, "on-error", MaskPolicy.OnError.self)
            default:
                throw fail(k, "unknown key '\(key)' in sql of policy \(name); expected deny, review, review-timeout or on-error")
            }
        }
        return s
    }

    func sqlRule(_ n: Node, in what: String) throws -> SQLPolicy.Rule {
        let kinds = SQLPolicy.Kind.allCases.map(\.rawValue).joined(separator: ", ")
        if let word = n.scalar?.string {
            guard let k = SQLPolicy.Kind(rawValue: word) else {
                throw fail(n, "\(what) names '\(word)'; expected one of \(kinds), or {table: \"schema.table\"}")
            }
            return .kind(k)
        }
        let m = try mapping(n, "a rule in \(what)")
        guard m.count == 1, m[0].0 == "table" else {
            throw fail(n, "a rule in \(what) must be one of \(kinds), or {table: \"schema.table\"}")
        }
        let glob = try string(m[0].2, "table")
        guard glob.allSatisfy({ $0.isLetter || $0.isNumber || "_.*?$-".contains($0) }) else {
            throw fail(m[0].2, "table '\(glob)' is not a table pattern; expected names like payroll.* or public.salaries")
        }
        return .table(glob)
    }
}
