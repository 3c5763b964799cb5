import BordergateAudit
import Foundation
import GRDB

/// A stored session as `bordergate sessions` shows it.
public struct StoredSession: Sendable, Codable, Equatable {
    public var id: String
    public var startedAt: Date
    public var endedAt: Date?
    public var process: AuditEvent.Process
    public var destination: AuditEvent.Destination
    public var policy: String
    public var `protocol`: String
    public var bytes: AuditEvent.Bytes?
    public var ending: String?
    public var entries: Int
    /// Content (headers, bodies, parameters) was kept; false: metadata only.
    public var content: Bool
    public var storedBytes: UInt64
    public var masked: Int
    public var sha256: String?

    public var duration: TimeInterval? { endedAt.map { $0.timeIntervalSince(startedAt) } }

    enum CodingKeys: String, CodingKey {
        case id, startedAt = "started_at", endedAt = "ended_at", process, destination, policy, `protocol`, bytes, ending,
             entries, content, storedBytes = "stored_bytes", masked, sha256
    }
}

/// One stored entry: an HTTP exchange or an SQL statement, as kept.
public struct StoredEntry: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case http, sql }
    public var seq: Int
    public var kind: Kind
    public var startedAt: Date
    public var respondedAt: Date?
    public var finishedAt: Date
    public var method: String?
    public var target: String?
    public var version: String?
    public var status: Int?
    /// nil when the session kept metadata only.
    public var requestHeaders: [RecordedHeader]?
    public var responseHeaders: [RecordedHeader]?
    public var requestBody: [UInt8]?
    public var responseBody: [UInt8]?
    public var requestBodyBytes: UInt64
    public var responseBodyBytes: UInt64
    public var truncated: Bool
    public var masked: [String: Int]
    public var note: String?
    public var sqlText: String?
    public var sqlParameters: [String?]?
    public var sqlRows: UInt64?
    public var sqlOutcome: String?
    public var sqlGuardrail: String?

    public var maskedTotal: Int { masked.values.reduce(0, +) }
}

/// Which sessions `sessions list` shows; all given must match.
public struct SessionQuery: Sendable {
    public var since: Date?
    public var pid: Int?
    /// This cgroup and those below it.
    public var cgroup: String?
    /// Hostname (or, without one, the address) matches; the caller's glob.
    public var host: (@Sendable (String) -> Bool)?

    public init(since: Date? = nil, pid: Int? = nil, cgroup: String? = nil, host: (@Sendable (String) -> Bool)? = nil) {
        self.since = since
        self.pid = pid
        self.cgroup = cgroup
        self.host = host
    }

    func matches(_ s: StoredSession) -> Bool {
        if let cgroup {
            let c = cgroup.count > 1 && cgroup.hasSuffix("/") ? String(cgroup.dropLast()) : cgroup
            guard s.process.cgroup == c || s.process.cgroup.hasPrefix(c == "/" ? "/" : c + "/") else { return false }
        }
        if let host, !host(s.destination.host ?? s.destination.ip) { return false }
        return true
    }
}

/// Reads a store read-only (the CLI, while the daemon writes: WAL lets both).
public final class SessionArchive: Sendable {
    public let path: String
    let queue: DatabaseQueue

    public init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(path: path, problem: "no session store here: nothing has been recorded in this state directory yet (the daemon and 'bordergate exec' create it)")
        }
        do {
            queue = try DatabaseQueue(path: path, configuration: SessionStore.configuration(readonly: true))
            _ = try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions") }
        } catch {
            throw StoreError(path: path, problem: "cannot read the session store: \(SessionStore.describe(error)); the daemon sets a corrupt store aside when it starts")
        }
    }

    /// Sessions, oldest first.
    public func list(_ query: SessionQuery = SessionQuery()) throws -> [StoredSession] {
        var sql = "SELECT * FROM sessions WHERE 1"
        var args: [(any DatabaseValueConvertible)?] = []
        if let since = query.since {
            sql += " AND (ended_at IS NULL OR ended_at >= ?)" // still open, or active after it
            args.append(StoreTime.micros(since))
        }
        if let pid = query.pid {
            sql += " AND pid = ?"
            args.append(pid)
        }
        sql += " ORDER BY started_at, id"
        let rows = try queue.read { db in try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)) }
        return rows.map(Self.session).filter(query.matches)
    }

    public func session(_ id: String) throws -> StoredSession? {
        try queue.read { db in try Row.fetchOne(db, sql: "SELECT * FROM sessions WHERE id = ?", arguments: [id]) }.map(Self.session)
    }

    /// The session, or an error that says the id is unknown.
    public func require(_ id: String) throws -> StoredSession {
        guard let s = try session(id) else {
            throw StoreError(path: path, problem: "no recorded session \(id); 'bordergate sessions list' shows the ids (they are the connection ids of events)")
        }
        return s
    }

    public func entries(_ id: String) throws -> [StoredEntry] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM entries WHERE session_id = ? ORDER BY seq", arguments: [id])
        }.map(Self.entry)
    }

    /// The digest of the session's rows as they are now; equal to its `sha256` unless the file
    /// was changed after the session closed.
    public func digest(of id: String) throws -> String {
        try queue.read { db in try SessionDigest.compute(db, id: id) }
    }

    static func session(_ r: Row) -> StoredSession {
        let sent: Int64? = r["bytes_sent"]
        let received: Int64? = r["bytes_received"]
        return StoredSession(
            id: r["id"], startedAt: StoreTime.date(r["started_at"]), endedAt: (r["ended_at"] as Int64?).map(StoreTime.date),
            process: AuditEvent.Process(pid: r["pid"], ppid: r["ppid"], uid: r["uid"], user: r["user"], comm: r["comm"],
                                        exe: r["exe"], cgroup: r["cgroup"]),
            destination: AuditEvent.Destination(ip: r["ip"], port: r["port"], host: r["host"], region: r["region"],
                                                country: r["country"]),
            policy: r["policy"], protocol: r["protocol"],
            bytes: sent.map { AuditEvent.Bytes(sent: UInt64(max(0, $0)), received: UInt64(max(0, received ?? 0))) },
            ending: r["ending"], entries: r["entries"], content: r["content"],
            storedBytes: UInt64(max(0, r["stored_bytes"] as Int64)), masked: r["masked"], sha256: r["sha256"])
    }

    static func entry(_ r: Row) -> StoredEntry {
        let requestBody: Data? = r["request_body"]
        let responseBody: Data? = r["response_body"]
        let rows: Int64? = r["sql_rows"]
        return StoredEntry(
            seq: r["seq"], kind: StoredEntry.Kind(rawValue: r["kind"]) ?? .http,
            startedAt: StoreTime.date(r["started_at"]), respondedAt: (r["responded_at"] as Int64?).map(StoreTime.date),
            finishedAt: StoreTime.date(r["finished_at"]),
            method: r["method"], target: r["target"], version: r["version"], status: r["status"],
            requestHeaders: StoredJSON.decode([RecordedHeader].self, r["request_headers"]),
            responseHeaders: StoredJSON.decode([RecordedHeader].self, r["response_headers"]),
            requestBody: requestBody.map { Array($0) }, responseBody: responseBody.map { Array($0) },
            requestBodyBytes: UInt64(max(0, r["request_body_bytes"] as Int64? ?? 0)),
            responseBodyBytes: UInt64(max(0, r["response_body_bytes"] as Int64? ?? 0)),
            truncated: r["truncated"], masked: StoredJSON.decode([String: Int].self, r["masked"]) ?? [:], note: r["note"],
            sqlText: r["sql_text"], sqlParameters: StoredJSON.decode([String?].self, r["sql_parameters"]),
            sqlRows: rows.map { UInt64(max(0, $0)) }, sqlOutcome: r["sql_outcome"], sqlGuardrail: r["sql_guardrail"])
    }
}
