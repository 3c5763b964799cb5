import BordergateAudit
import Foundation
import GRDB
import Logging

/// The recorded sessions on disk: one SQLite file, `<state>/recordings/sessions.sqlite`, in WAL
/// mode so the CLI reads it while the daemon writes. The directory is 0700 and the file 0600:
/// recordings hold what tools sent and received.
///
/// Recordings' writes go through ``WriteQueue`` onto GRDB's one serial writer queue, batched
/// into a transaction per turn, so a recording's appends never wait on the disk and stay in order.
public final class SessionStore: Sendable {
    public let path: String
    let pool: DatabasePool
    let logger: Logger
    /// Where a corrupt file found at open was moved; nil when the store opened as it was.
    public let setAside: String?
    /// The recordings' writes, batched into one transaction per turn of the writer.
    let writes: WriteQueue

    /// Where the store of a state directory lives.
    public static func path(stateDirectory: String) -> String {
        stateDirectory + "/recordings/sessions.sqlite"
    }

    /// Opens (creating if needed) the store at `path`. A file that is not a database or is corrupt
    /// is renamed aside to `sessions.sqlite.corrupt-<time>` (nothing recorded is deleted), the
    /// error is logged, and a new store is started; any other failure throws a ``StoreError``.
    public init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        do {
            pool = try Self.openWriter(path: path)
            setAside = nil
        } catch let e as DatabaseError where Self.isCorruption(e) {
            let aside = try Self.setAside(path)
            setAside = aside
            logger.error("the session store \(path) is unreadable (\(e.resultCode): \(e.message ?? "corrupt")); moved it to \(aside) and started a new one; inspect or delete the old file")
            do {
                pool = try Self.openWriter(path: path)
            } catch {
                throw StoreError(path: path, problem: "cannot start a new session store after setting the corrupt one aside: \(Self.describe(error))")
            }
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(path: path, problem: "cannot open the session store: \(Self.describe(error))")
        }
        writes = WriteQueue(pool: pool)
    }

    static func isCorruption(_ e: DatabaseError) -> Bool {
        e.resultCode == .SQLITE_CORRUPT || e.resultCode == .SQLITE_NOTADB
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return "\(e.message ?? "\(e.resultCode)") (\(e.resultCode))" }
        return "\(error)"
    }

    /// Renames the database (and its WAL and shared-memory files) aside; returns the new name.
    static func setAside(_ path: String) throws -> String {
        let stamp = AuditTime.format(Date()).replacingOccurrences(of: ":", with: "")
        let aside = "\(path).corrupt-\(stamp)"
        guard rename(path, aside) == 0 else {
            throw StoreError(path: path, problem: "the session store is corrupt and cannot be moved aside (\(String(cString: strerror(errno)))); move or delete it by hand")
        }
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            _ = rename(path + suffix, aside + suffix)
        }
        return aside
    }

    static func configuration(readonly: Bool) -> Configuration {
        var c = Configuration()
        c.readonly = readonly
        c.foreignKeysEnabled = true
        // a second writer (a standalone exec next to another) waits rather than fails
        c.busyMode = .timeout(10)
        c.label = "bordergate.sessions"
        return c
    }

    static func openWriter(path: String) throws -> DatabasePool {
        if try prepareFile(path) {
            // A new file gets `auto_vacuum = INCREMENTAL`, so the pages deleted sessions free go back
            // to the file system with `PRAGMA incremental_vacuum`. It must be set before the first
            // table and before WAL mode (which writes the header), so on a plain connection first.
            let queue = try DatabaseQueue(path: path, configuration: configuration(readonly: false))
            try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL") }
            try migrator.migrate(queue)
            try queue.close()
        }
        let pool = try DatabasePool(path: path, configuration: configuration(readonly: false))
        try pool.writeWithoutTransaction { db in
            // An older file without it is converted by the next full VACUUM retention runs.
            try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
        }
        try migrator.migrate(pool)
        // A file that only looks like a database fails here, not at the first append.
        _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions") }
        return pool
    }

    /// The directory 0700 and the file 0600, created before SQLite does (it gives the WAL
    /// files the database's mode). True when the file is new (empty).
    @discardableResult
    static func prepareFile(_ path: String) throws -> Bool {
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError(path: path, problem: "cannot create the directory \(dir) for recordings: \(error.localizedDescription)")
        }
        _ = chmod(dir, 0o700)
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError(path: path, problem: "cannot create the session store: \(String(cString: strerror(errno)))")
        }
        fchmod(fd, 0o600)
        var st = stat()
        let empty = fstat(fd, &st) == 0 && st.st_size == 0
        close(fd)
        return empty
    }

    /// The schema. Times are microseconds since the epoch (INTEGER), so the digest's canonical
    /// form has no floating point in it.
    static let migrator: DatabaseMigrator = {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE sessions (
                  id TEXT PRIMARY KEY NOT NULL,
                  started_at INTEGER NOT NULL,
                  ended_at INTEGER,
                  pid INTEGER NOT NULL,
                  ppid INTEGER,
                  uid INTEGER NOT NULL,
                  user TEXT,
                  comm TEXT NOT NULL,
                  exe TEXT,
                  cgroup TEXT NOT NULL,
                  host TEXT,
                  ip TEXT NOT NULL,
                  port INTEGER NOT NULL,
                  region TEXT,
                  country TEXT,
                  policy TEXT NOT NULL,
                  protocol TEXT NOT NULL,
                  bytes_sent INTEGER,
                  bytes_received INTEGER,
                  ending TEXT,
                  entries INTEGER NOT NULL DEFAULT 0,
                  content INTEGER NOT NULL,
                  stored_bytes INTEGER NOT NULL DEFAULT 0,
                  masked INTEGER NOT NULL DEFAULT 0,
                  sha256 TEXT
                );
                CREATE INDEX sessions_started ON sessions(started_at);
                CREATE INDEX sessions_ended ON sessions(ended_at);
                CREATE TABLE entries (
                  session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                  seq INTEGER NOT NULL,
                  kind TEXT NOT NULL,
                  started_at INTEGER NOT NULL,
                  responded_at INTEGER,
                  finished_at INTEGER NOT NULL,
                  method TEXT,
                  target TEXT,
                  version TEXT,
                  status INTEGER,
                  request_headers TEXT,
                  response_headers TEXT,
                  request_body BLOB,
                  response_body BLOB,
                  request_body_bytes INTEGER,
                  response_body_bytes INTEGER,
                  truncated INTEGER NOT NULL DEFAULT 0,
                  masked TEXT,
                  note TEXT,
                  sql_text TEXT,
                  sql_parameters TEXT,
                  sql_rows INTEGER,
                  sql_outcome TEXT,
                  sql_guardrail TEXT,
                  PRIMARY KEY (session_id, seq)
                ) WITHOUT ROWID;
                """)
        }
        return m
    }()

    /// Waits for every write handed to the store so far (tests, and a stopping daemon).
    public func flush() {
        pool.writeWithoutTransaction { _ in }
    }

    /// Sessions a daemon that died left open: ended at their last entry (or start), ending
    /// `incomplete`, with their digest, so retention and `sessions show` treat them like others.
    /// Only the process that owns the store calls this, before it records.
    @discardableResult
    public func closeAbandoned(except open: Set<String> = []) -> Int {
        do {
            return try pool.write { db in
                let ids = try String.fetchAll(db, sql: "SELECT id FROM sessions WHERE ended_at IS NULL").filter { !open.contains($0) }
                for id in ids {
                    let last = try Int64.fetchOne(db, sql: "SELECT max(finished_at) FROM entries WHERE session_id = ?", arguments: [id])
                    try db.execute(sql: """
                        UPDATE sessions SET ended_at = max(started_at, coalesce(?, started_at)), ending = 'incomplete'
                        WHERE id = ?
                        """, arguments: [last, id])
                    let digest = try SessionDigest.compute(db, id: id)
                    try db.execute(sql: "UPDATE sessions SET sha256 = ? WHERE id = ?", arguments: [digest, id])
                }
                return ids.count
            }
        } catch {
            logger.error("cannot close the sessions a stopped daemon left open in \(path): \(Self.describe(error))")
            return 0
        }
    }

    /// The digest of a stored session as its rows are now (compare with its `sha256` and with the
    /// `session` event's).
    public func digest(of id: String) throws -> String {
        try pool.read { db in try SessionDigest.compute(db, id: id) }
    }
}

/// The session store could not be used: where, what, and what to do.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var problem: String
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }
    public var description: String { "\(path): \(problem)" }
}

/// Microseconds since the epoch, the store's time.
enum StoreTime {
    static func micros(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1_000_000).rounded()) }
    static func date(_ us: Int64) -> Date { Date(timeIntervalSince1970: Double(us) / 1_000_000) }
}
