import CPgQuery
import Foundation

/// A policy's `sql:` guardrails, as the PostgreSQL handler applies them (built by the composition
/// root from `BordergatePolicy`'s `SQLPolicy`).
public struct SQLGuardrails: Sendable, Equatable {
    /// Statement kinds and shapes, decided on PostgreSQL's own parse tree.
    public enum Kind: String, Sendable, CaseIterable {
        case drop, truncate, alter, grant
        case deleteWithoutWhere = "delete-without-where"
        case updateWithoutWhere = "update-without-where"
        case copyToProgram = "copy-to-program"
    }

    public enum Rule: Sendable, Equatable {
        case kind(Kind)
        /// Any statement that names a table (or view, sequence, ...) matching this glob:
        /// `payroll.*`, `*.secrets`, `salaries`; case-insensitive.
        case table(String)

        public var name: String {
            switch self {
            case .kind(let k): k.rawValue
            case .table(let t): "table \(t)"
            }
        }
    }

    public var deny: [Rule]
    /// Rules that hold a statement until it is approved (`bordergate approve`); refused when it is
    /// rejected, when nobody answers in time, or where nothing can answer (no daemon).
    public var review: [Rule]
    /// A statement the parser cannot parse, or whose effect cannot be seen in the tree (a `DO`
    /// block, a function body in a string): refused (`on-error: block`, the default) or passed.
    public var blockUndecidable: Bool
    /// The policy is in `mode: audit`: nothing is refused; each statement a rule would have
    /// refused is a `guardrail` event with verdict `audit`.
    public var audit: Bool
    /// How long a statement a `review` rule holds waits for an answer before it is refused.
    public var reviewTimeout: TimeInterval

    public init(deny: [Rule] = [], review: [Rule] = [], blockUndecidable: Bool = true, audit: Bool = false,
                reviewTimeout: TimeInterval = 300) {
        self.deny = deny
        self.review = review
        self.blockUndecidable = blockUndecidable
        self.audit = audit
        self.reviewTimeout = reviewTimeout
    }
}

/// What one SQL string holds, statement by statement, read with libpg_query (PostgreSQL's own
/// grammar, so comments, quoted identifiers, dollar quoting and `WITH ... DELETE` are what the
/// server will see, not what a regular expression guesses).
struct SQLAnalysis {
    struct Statement {
        /// Constants replaced by `$n` (`pg_query_normalize`): what the recording keeps.
        var normalized: String
        /// The guardrail this statement breaks, and why; nil when none does.
        var refusal: Refusal?
        /// `COMMIT`, `ROLLBACK`, ... (a TransactionStmt), for a transaction the proxy failed.
        var transaction: String?
    }

    struct Refusal: Equatable {
        /// The rule's name as the policy writes it (`drop`, `table payroll.*`, `review:alter`).
        var rule: String
        var message: String
        /// A `review` rule's: the statement may be held for approval instead.
        var review = false
    }

    var statements: [Statement]
    /// The parser's complaint; then ``statements`` is empty.
    var parseError: String?

    /// The first refusal among the statements, or for the whole string when it cannot be decided.
    func refusal(undecidable block: Bool) -> Refusal? {
        if let parseError {
            return block ? Refusal(rule: "on-error", message: "the statement cannot be parsed (\(parseError)), so no guardrail can decide it (on-error: block)") : nil
        }
        // a deny anywhere in the string wins over a review: approving it must not run the other
        let all = statements.compactMap(\.refusal).filter { block || $0.rule != "on-error" }
        return all.first { !$0.review } ?? all.first
    }

    /// How the recording shows a string it could not parse: never its text, which may hold values.
    static func unparsed(_ sql: String) -> String { "-- not parsed (\(sql.utf8.count) bytes)" }

    static func analyse(_ sql: String, guardrails: SQLGuardrails?) -> SQLAnalysis {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error {
            return SQLAnalysis(statements: [], parseError: String(cString: error.pointee.message))
        }
        guard let tree = result.parse_tree,
              let json = try? JSONSerialization.jsonObject(with: Data(String(cString: tree).utf8)) as? [String: Any] else {
            return SQLAnalysis(statements: [], parseError: "libpg_query gave no parse tree")
        }
        let bytes = Array(sql.utf8)
        var out: [Statement] = []
        for raw in json["stmts"] as? [[String: Any]] ?? [] {
            let location = raw["stmt_location"] as? Int ?? 0
            var length = raw["stmt_len"] as? Int ?? 0
            if length == 0 { length = bytes.count - location } // the last statement: to the end
            let lo = max(0, min(location, bytes.count)), hi = max(lo, min(location + length, bytes.count))
            let text = String(decoding: bytes[lo..<hi], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let stmt = raw["stmt"] as? [String: Any] ?? [:]
            var s = Statement(normalized: normalize(text), refusal: nil, transaction: nil)
            if let t = stmt["TransactionStmt"] as? [String: Any] { s.transaction = t["kind"] as? String }
            if let guardrails { s.refusal = decide(stmt, guardrails) }
            out.append(s)
        }
        return SQLAnalysis(statements: out, parseError: nil)
    }

    static func normalize(_ statement: String) -> String {
        let r = pg_query_normalize(statement)
        defer { pg_query_free_normalize_result(r) }
        guard r.error == nil, let q = r.normalized_query else { return unparsed(statement) }
        return String(cString: q)
    }

    // MARK: guardrails

    /// What one statement's tree shows: every node kind in it (a `DELETE` inside a `WITH` counts)
    /// and every relation it names.
    struct Facts {
        var kinds: Set<SQLGuardrails.Kind> = []
        var relations: [String] = []
        var searchPath: [String] = []
        var undecidable: String?
    }

    static func decide(_ stmt: [String: Any], _ g: SQLGuardrails) -> Refusal? {
        var facts = Facts()
        walk(stmt, &facts)
        for (rules, review) in [(g.deny, false), (g.review, true)] {
            for rule in rules {
                guard let why = breaks(rule, facts) else { continue }
                if review {
                    return Refusal(rule: "review:\(rule.name)", message: "\(why) needs approval (sql.review: \(rule.name))", review: true)
                }
                return Refusal(rule: rule.name, message: "\(why) is refused by the guardrail '\(rule.name)'")
            }
        }
        if let u = facts.undecidable, !(g.deny.isEmpty && g.review.isEmpty) {
            return Refusal(rule: "on-error", message: "\(u) hides statements no guardrail can see (on-error: block)")
        }
        return nil
    }

    static func breaks(_ rule: SQLGuardrails.Rule, _ f: Facts) -> String? {
        switch rule {
        case .kind(let k):
            guard f.kinds.contains(k) else { return nil }
            switch k {
            case .drop: return "DROP"
            case .truncate: return "TRUNCATE"
            case .alter: return "ALTER"
            case .grant: return "GRANT/REVOKE"
            case .deleteWithoutWhere: return "DELETE without WHERE"
            case .updateWithoutWhere: return "UPDATE without WHERE"
            case .copyToProgram: return "COPY with PROGRAM"
            }
        case .table(let glob):
            if let hit = f.relations.first(where: { matches(glob, $0) }) { return "a statement on \(hit)" }
            // `SET search_path = payroll` would let unqualified names reach the schema unseen.
            if let schema = glob.split(separator: ".", maxSplits: 1).first.map(String.init), glob.contains("."),
               let hit = f.searchPath.first(where: { matches(schema, $0) }) {
                return "setting search_path to \(hit)"
            }
            return nil
        }
    }

    static func matches(_ glob: String, _ name: String) -> Bool {
        let g = glob.lowercased(), n = name.lowercased()
        if fnmatch(g, n, 0) == 0 { return true }
        let gp = g.split(separator: ".", maxSplits: 1).map(String.init), np = n.split(separator: ".", maxSplits: 1).map(String.init)
        // `salaries` names the table in any schema
        if gp.count == 1, np.count == 2 { return fnmatch(g, np[1], 0) == 0 }
        // an unqualified name resolves by the server's search path, unknown here: only a glob
        // for every schema decides it
        if gp.count == 2, np.count == 1, gp[0] == "*" { return fnmatch(gp[1], n, 0) == 0 }
        return false
    }

    static func walk(_ node: Any, _ f: inout Facts) {
        if let list = node as? [Any] {
            for item in list { walk(item, &f) }
            return
        }
        guard let dict = node as? [String: Any] else { return }
        for (key, value) in dict {
            let v = value as? [String: Any] ?? [:]
            switch key {
            case "TruncateStmt": f.kinds.insert(.truncate)
            case "GrantStmt", "GrantRoleStmt": f.kinds.insert(.grant)
            case "RenameStmt": f.kinds.insert(.alter)
            case "DeleteStmt": if v["whereClause"] == nil { f.kinds.insert(.deleteWithoutWhere) }
            case "UpdateStmt": if v["whereClause"] == nil { f.kinds.insert(.updateWithoutWhere) }
            case "CopyStmt": if v["is_program"] as? Bool == true { f.kinds.insert(.copyToProgram) }
            case "DoStmt": f.undecidable = "a DO block"
            case "CreateFunctionStmt": if v["sql_body"] == nil { f.undecidable = "a function whose body is a string" }
            case "RangeVar":
                let rel = v["relname"] as? String ?? ""
                f.relations.append((v["schemaname"] as? String).map { "\($0).\(rel)" } ?? rel)
            case "DropStmt":
                f.kinds.insert(.drop)
                for object in v["objects"] as? [Any] ?? [] { f.relations.append(contentsOf: names(object)) }
            case "VariableSetStmt" where (v["name"] as? String)?.lowercased() == "search_path":
                var found: [String] = []
                collectStrings(v["args"] ?? [], &found)
                f.searchPath.append(contentsOf: found)
            default:
                if key.hasPrefix("Drop"), key.hasSuffix("Stmt") { f.kinds.insert(.drop) }
                if key.hasPrefix("Alter"), key.hasSuffix("Stmt") { f.kinds.insert(.alter) }
            }
            walk(value, &f)
        }
    }

    /// The dotted name of a dropped object (`{"List": {"items": [{"String": {"sval": "a"}}, ...]}}`).
    static func names(_ object: Any) -> [String] {
        var parts: [String] = []
        collectStrings(object, &parts)
        return parts.isEmpty ? [] : [parts.joined(separator: ".")]
    }

    static func collectStrings(_ node: Any, _ out: inout [String]) {
        if let list = node as? [Any] { for i in list { collectStrings(i, &out) }; return }
        guard let dict = node as? [String: Any] else { return }
        for (k, v) in dict {
            if k == "sval", let s = v as? String { out.append(s) } else { collectStrings(v, &out) }
        }
    }
}
