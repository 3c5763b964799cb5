import BordergateAudit
import Foundation
import GRDB
import Logging

/// Records sessions into a ``SessionStore``. `open`, `append` and `close` only take a lock for
/// a few counters and hand the rows to the store's writer queue (``WriteQueue``, batched): they
/// never wait on the disk, so handlers call them from their event loops.
///
/// Content (headers, bodies, SQL parameters) is kept only when ``SessionStart/content`` says
/// so; metadata (method, target, status, sizes, timings, masked counts, the normalised SQL
/// text) always. Bodies kept per session are capped at ``maxSessionBodyBytes``: past it an
/// exchange keeps what fits and is marked truncated.
///
/// On close the session's digest is computed over what was stored (``SessionDigest``), written
/// to its row, and a `session` audit event goes to `sink`.
///
/// The disk may be slower than the network: content waiting to be written is bounded by
/// ``maxPendingBytes`` over all sessions. Past it an entry keeps its metadata only, is marked
/// truncated and says why in its note; the proxy never waits and memory stays bounded.
public final class StoreRecorder: SessionRecorder {
    public static let defaultMaxSessionBodyBytes: UInt64 = 64 << 20
    public static let defaultMaxPendingBytes: UInt64 = 256 << 20
    static let fellBehind = "the recording fell behind the disk: content not kept"

    public let store: SessionStore
    public let maxPendingBytes: UInt64
    private let cap: PendingBytes
    let sink: @Sendable (AuditEvent) -> Void
    let pending = PendingBytes()

    public init(store: SessionStore, maxSessionBodyBytes: UInt64 = StoreRecorder.defaultMaxSessionBodyBytes,
                maxPendingBytes: UInt64 = StoreRecorder.defaultMaxPendingBytes,
                sink: @escaping @Sendable (AuditEvent) -> Void) {
        self.store = store
        cap = PendingBytes(maxSessionBodyBytes)
        self.maxPendingBytes = maxPendingBytes
        self.sink = sink
    }

    /// Body bytes kept per session; a change (a config reload) applies to sessions opened after it.
    public var maxSessionBodyBytes: UInt64 {
        get { cap.value }
        set { cap.set(newValue) }
    }

    /// Content bytes handed to the writer queue and not yet written.
    public var pendingBytes: UInt64 { pending.value }

    public func open(_ start: SessionStart) -> any SessionRecording {
        let r = StoreRecording(start: start, recorder: self)
        let s = start
        store.writes.enqueue({ db in
            try db.execute(sql: """
                INSERT INTO sessions (id, started_at, pid, ppid, uid, user, comm, exe, cgroup, host, ip, port, region,
                  country, policy, protocol, content)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [s.id, StoreTime.micros(s.startedAt), s.process.pid, s.process.ppid, s.process.uid,
                                 s.process.user, s.process.comm, s.process.exe, s.process.cgroup, s.destination.host,
                                 s.destination.ip, s.destination.port, s.destination.region, s.destination.country,
                                 s.policy, s.protocol.rawValue, s.content])
        }, done: { result in
            if case .failure(let error) = result { r.failed("cannot store the session", error) }
        })
        return r
    }
}

final class StoreRecording: SessionRecording, @unchecked Sendable {
    let start: SessionStart
    let recorder: StoreRecorder
    /// The recorder's cap when the session opened.
    let maxBodyBytes: UInt64
    private let lock = NSLock()
    private var seq = 0
    private var bodyBytesKept: UInt64 = 0
    private var masked = 0
    private var closed = false
    private var failure: String?
    /// Set on the writer queue by the first entry that could not be stored: the entries queued
    /// behind it are skipped there, so "the rest of this session is not recorded" holds whether
    /// they were appended before or after the failure was reported.
    private var writeFailed = false

    init(start: SessionStart, recorder: StoreRecorder) {
        self.start = start
        self.recorder = recorder
        maxBodyBytes = recorder.maxSessionBodyBytes
    }

    var store: SessionStore { recorder.store }

    func failed(_ what: String, _ error: any Error) {
        let text = "\(what) \(start.id) in \(store.path): \(SessionStore.describe(error))"
        let first = lock.withLock { () -> Bool in
            defer { if failure == nil { failure = text } }
            return failure == nil
        }
        if first { store.logger.error("\(text); the rest of this session is not recorded") }
    }

    /// What of `body` fits under the session's cap (and counts it).
    private func keep(_ body: [UInt8]) -> (kept: [UInt8], cut: Bool) {
        guard start.content else { return ([], false) }
        let room = maxBodyBytes > bodyBytesKept ? maxBodyBytes - bodyBytesKept : 0
        if UInt64(body.count) <= room {
            bodyBytesKept += UInt64(body.count)
            return (body, false)
        }
        bodyBytesKept += room
        return (Array(body.prefix(Int(room))), true)
    }

    func append(_ entry: SessionEntry) {
        let id = start.id
        let content = start.content
        // Built on the writer queue: encoding headers and copying bodies is not the event loop's work.
        let arguments: @Sendable () -> StatementArguments
        let sql: String
        var reserved: UInt64 = 0
        let n: Int? = lock.withLock {
            guard !closed, failure == nil else { return nil }
            seq += 1
            return seq
        }
        guard let n else { return }
        switch entry {
        case .http(let x):
            var (request, requestCut, response, responseCut) = lock.withLock { () -> ([UInt8], Bool, [UInt8], Bool) in
                masked += x.masked.values.reduce(0, +)
                let q = keep(x.requestBody)
                let r = keep(x.responseBody)
                return (q.kept, q.cut, r.kept, r.cut)
            }
            var note = x.note
            var keepContent = content
            if content {
                let headers = (x.requestHeaders + x.responseHeaders).reduce(0) { (sum: Int, h: RecordedHeader) in
                    sum + h.name.utf8.count + h.value.utf8.count + 32
                }
                let size = UInt64(request.count + response.count + headers)
                if recorder.pending.reserve(size, limit: recorder.maxPendingBytes) {
                    reserved = size
                } else {
                    keepContent = false
                    requestCut = !x.requestBody.isEmpty
                    responseCut = !x.responseBody.isEmpty
                    (request, response) = ([], [])
                    note = [x.note, StoreRecorder.fellBehind].compactMap { $0 }.joined(separator: "; ")
                }
            }
            sql = """
                INSERT INTO entries (session_id, seq, kind, started_at, responded_at, finished_at, method, target, version,
                  status, request_headers, response_headers, request_body, response_body, request_body_bytes,
                  response_body_bytes, truncated, masked, note)
                VALUES (?, ?, 'http', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
            let (withContent, requestKept, responseKept, truncated, entryNote) = (keepContent, request, response,
                                                                             x.truncated || requestCut || responseCut, note)
            arguments = {
                [id, n, StoreTime.micros(x.startedAt), x.respondedAt.map(StoreTime.micros), StoreTime.micros(x.finishedAt),
                 x.method, x.target, x.version, x.status,
                 withContent ? StoredJSON.headers(x.requestHeaders) : nil,
                 withContent ? StoredJSON.headers(x.responseHeaders) : nil,
                 withContent ? Data(requestKept) : nil, withContent ? Data(responseKept) : nil,
                 Int64(clamping: x.requestBodyBytes), Int64(clamping: x.responseBodyBytes),
                 truncated, StoredJSON.masked(x.masked), entryNote]
            }
        case .sql(let s):
            lock.withLock { masked += s.masked.values.reduce(0, +) }
            sql = """
                INSERT INTO entries (session_id, seq, kind, started_at, finished_at, masked, sql_text, sql_parameters,
                  sql_rows, sql_outcome, sql_guardrail)
                VALUES (?, ?, 'sql', ?, ?, ?, ?, ?, ?, ?, ?)
                """
            arguments = {
                [id, n, StoreTime.micros(s.startedAt), StoreTime.micros(s.finishedAt), StoredJSON.masked(s.masked),
                 s.text, content ? StoredJSON.parameters(s.parameters) : nil, Int64(clamping: s.rows), s.outcome, s.guardrail]
            }
        }
        let held = reserved
        store.writes.enqueue({ [self] db in
            guard !lock.withLock({ writeFailed }) else { return }
            do {
                try db.cachedStatement(sql: sql).execute(arguments: arguments())
            } catch {
                lock.withLock { writeFailed = true }
                throw error
            }
        }, done: { [self] result in
            recorder.pending.release(held)
            if case .failure(let error) = result { failed("cannot store an entry of session", error) }
        })
    }

    func close(_ end: SessionEnd) {
        let (wasClosed, masked): (Bool, Int) = lock.withLock {
            defer { closed = true }
            return (closed, self.masked)
        }
        guard !wasClosed else { return } // once; a second close would rewrite the ending and digest
        let s = start
        let sink = recorder.sink
        let logger = store.logger
        let stored = Stored()
        store.writes.enqueue({ db in
            try db.execute(sql: """
                UPDATE sessions SET ended_at = :ended, bytes_sent = :sent, bytes_received = :received, ending = :ending,
                  entries = (SELECT count(*) FROM entries WHERE session_id = :id),
                  stored_bytes = (SELECT coalesce(sum(coalesce(length(request_body), 0) + coalesce(length(response_body), 0)
                    + coalesce(length(CAST(request_headers AS BLOB)), 0) + coalesce(length(CAST(response_headers AS BLOB)), 0)
                    + coalesce(length(CAST(sql_parameters AS BLOB)), 0)), 0) FROM entries WHERE session_id = :id),
                  masked = :masked
                WHERE id = :id
                """,
                arguments: ["id": s.id, "ended": StoreTime.micros(end.endedAt), "sent": Int64(clamping: end.bytes.sent),
                            "received": Int64(clamping: end.bytes.received), "ending": end.ending?.rawValue,
                            "masked": masked])
            let digest = try SessionDigest.compute(db, id: s.id)
            try db.execute(sql: "UPDATE sessions SET sha256 = ? WHERE id = ?", arguments: [digest, s.id])
            let row = try Row.fetchOne(db, sql: "SELECT entries, stored_bytes FROM sessions WHERE id = ?", arguments: [s.id])
            stored.set(entries: row?["entries"] ?? 0, bytes: UInt64(row?["stored_bytes"] as Int64? ?? 0), sha256: digest)
        }, done: { [self] result in
            // after every write queued before this one, so a failed append has been counted
            let failure = lock.withLock { self.failure }
            var e = AuditEvent(time: end.endedAt, type: .session, process: s.process, destination: s.destination,
                               protocol: s.protocol, policy: s.policy, connection: s.id, bytes: end.bytes,
                               duration_ms: (end.endedAt.timeIntervalSince(s.startedAt) * 1000 * 1000).rounded() / 1000,
                               end: end.ending)
            switch result {
            case .success:
                e.session = stored.session(id: s.id)
                if let failure { e.error = "the recording is incomplete: \(failure)" }
            case .failure(let error):
                let text = "cannot close session \(s.id) in the store: \(SessionStore.describe(error))"
                logger.error("\(text)")
                e.error = failure.map { "\($0); \(text)" } ?? text
            }
            sink(e)
        })
    }
}

/// What a close stored, from the writer queue to its completion.
final class Stored: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (entries: Int, bytes: UInt64, sha256: String) = (0, 0, "")
    func set(entries: Int, bytes: UInt64, sha256: String) { lock.withLock { value = (entries, bytes, sha256) } }
    func session(id: String) -> AuditEvent.Session {
        lock.withLock { AuditEvent.Session(id: id, entries: value.entries, bytes: value.bytes, sha256: value.sha256) }
    }
}

/// A byte count under a lock: content on its way to the disk, or the body cap.
final class PendingBytes: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: UInt64
    init(_ initial: UInt64 = 0) { bytes = initial }
    var value: UInt64 { lock.withLock { bytes } }
    func set(_ v: UInt64) { lock.withLock { bytes = v } }
    /// Adds `n` if that stays within `limit` (one entry larger than the limit passes when nothing waits).
    func reserve(_ n: UInt64, limit: UInt64) -> Bool {
        lock.withLock {
            guard bytes == 0 || bytes + n <= limit else { return false }
            bytes += n
            return true
        }
    }
    func release(_ n: UInt64) { lock.withLock { bytes -= min(n, bytes) } }
}

/// The JSON columns: headers as `[{"name","value"}]` in order, masked counts and SQL parameters
/// with sorted keys, so the same values give the same bytes (and digest).
enum StoredJSON {
    static func encode<T: Encodable>(_ v: T) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
    static func headers(_ h: [RecordedHeader]) -> String { encode(h) }
    static func masked(_ m: [String: Int]) -> String? { m.isEmpty ? nil : encode(m) }
    static func parameters(_ p: [String?]) -> String? { p.isEmpty ? nil : encode(p) }

    static func decode<T: Decodable>(_ t: T.Type, _ s: String?) -> T? {
        guard let s else { return nil }
        return try? JSONDecoder().decode(T.self, from: Data(s.utf8))
    }
}
