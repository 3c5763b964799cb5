import Crypto
import Foundation
import GRDB

/// The SHA-256 of a stored session, over a canonical serialisation of its rows, so that anyone
/// with the file (and `sqlite3`) can recompute what the `session` event said.
///
/// The input is the tag `bordergate-session-v1`, then the session's columns in
/// ``sessionColumns`` order, then, for each entry in `seq` order, its columns in
/// ``entryColumns`` order. Each value is one type byte and its bytes: `N` (NULL); `I` and the
/// integer as 8 bytes big-endian; `T` or `B` (text, blob), an 8-byte big-endian length and the
/// bytes. Every column but `sha256` itself is in it, the body blobs included.
public enum SessionDigest {
    /// Every column of `sessions` but `sha256`.
    public static let sessionColumns = [
        "id", "started_at", "ended_at", "pid", "ppid", "uid", "user", "comm", "exe", "cgroup", "host", "ip", "port",
        "region", "country", "policy", "protocol", "bytes_sent", "bytes_received", "ending", "entries", "content",
        "stored_bytes", "masked",
    ]
    /// Every column of `entries`.
    public static let entryColumns = [
        "session_id", "seq", "kind", "started_at", "responded_at", "finished_at", "method", "target", "version", "status",
        "request_headers", "response_headers", "request_body", "response_body", "request_body_bytes",
        "response_body_bytes", "truncated", "masked", "note", "sql_text", "sql_parameters", "sql_rows", "sql_outcome",
        "sql_guardrail",
    ]

    /// Reads the session's rows and digests them; throws ``StoreError`` for an unknown id.
    static func compute(_ db: Database, id: String) throws -> String {
        guard let session = try Row.fetchOne(db, sql: "SELECT \(sessionColumns.joined(separator: ", ")) FROM sessions WHERE id = ?",
                                             arguments: [id]) else {
            throw StoreError(path: db.configuration.label ?? "sessions", problem: "no session \(id)")
        }
        var hasher = SHA256()
        hasher.update(data: Array("bordergate-session-v1".utf8))
        feed(session, into: &hasher)
        let rows = try Row.fetchCursor(db, sql: "SELECT \(entryColumns.joined(separator: ", ")) FROM entries WHERE session_id = ? ORDER BY seq",
                                       arguments: [id])
        while let row = try rows.next() { feed(row, into: &hasher) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func feed(_ row: Row, into hasher: inout SHA256) {
        for value in row.databaseValues {
            var bytes: [UInt8] = []
            switch value.storage {
            case .null:
                bytes = [UInt8(ascii: "N")]
            case .int64(let i):
                bytes = [UInt8(ascii: "I")] + bigEndian(UInt64(bitPattern: i))
            case .double(let d):
                bytes = [UInt8(ascii: "D")] + bigEndian(d.bitPattern) // no column holds one
            case .string(let s):
                let utf8 = Array(s.utf8)
                bytes = [UInt8(ascii: "T")] + bigEndian(UInt64(utf8.count)) + utf8
            case .blob(let data):
                bytes = [UInt8(ascii: "B")] + bigEndian(UInt64(data.count)) + Array(data)
            }
            hasher.update(data: bytes)
        }
    }

    static func bigEndian(_ v: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) }
    }
}
