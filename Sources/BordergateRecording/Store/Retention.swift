import Foundation
import GRDB

/// How long recordings are kept and how large the store may grow (the config's
/// `recording: {retain: 30d, max-size: 2GiB}`).
public struct RetentionPolicy: Sendable, Equatable {
    public static let defaultRetain: TimeInterval = 30 * 86400
    public static let defaultMaxBytes: UInt64 = 2 << 30

    /// Sessions that ended longer ago than this are deleted.
    public var retain: TimeInterval
    /// Past this size (of what the file holds), the oldest sessions are deleted until it fits.
    public var maxBytes: UInt64

    public init(retain: TimeInterval = RetentionPolicy.defaultRetain, maxBytes: UInt64 = RetentionPolicy.defaultMaxBytes) {
        self.retain = retain
        self.maxBytes = maxBytes
    }
}

/// What one pass of retention did.
public struct RetentionReport: Sendable, Equatable {
    public var expired = 0
    public var evictedForSize = 0
    /// The database and its WAL on disk, before and after.
    public var bytesBefore: UInt64 = 0
    public var bytesAfter: UInt64 = 0

    public var deleted: Int { expired + evictedForSize }
}

extension SessionStore {
    /// Deletes whole sessions, oldest first: those that ended before `now - retain`, then the
    /// oldest ended ones until the data fits in `maxBytes`; then gives the freed pages back to
    /// the file system (incremental vacuum, or VACUUM for a file made without it) and truncates
    /// the WAL, so the disk is really freed. Sessions still open are never deleted.
    /// Blocks for as long as that takes: call it off the event loops.
    @discardableResult
    public func applyRetention(_ policy: RetentionPolicy, now: Date = Date()) throws -> RetentionReport {
        var report = RetentionReport()
        report.bytesBefore = fileBytes()
        let cutoff = StoreTime.micros(now.addingTimeInterval(-policy.retain))
        report.expired = try pool.write { db in
            try db.execute(sql: "DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?", arguments: [cutoff])
            return db.changesCount
        }
        for _ in 0..<1000 {
            let used = try usedBytes()
            guard used > policy.maxBytes else { break }
            let excess = used - policy.maxBytes
            let n = try pool.write { db -> Int in
                // Each session's share of the file, roughly: what it stored and a little per row.
                let rows = try Row.fetchAll(db, sql: """
                    SELECT id, stored_bytes + 200 * entries + 500 AS size FROM sessions
                    WHERE ended_at IS NOT NULL ORDER BY ended_at, started_at, id LIMIT 10000
                    """)
                var batch: [String] = []
                var freed: UInt64 = 0
                for row in rows where freed < excess {
                    batch.append(row["id"])
                    freed += UInt64(max(0, row["size"] as Int64))
                }
                for id in batch { try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id]) }
                return batch.count
            }
            if n == 0 { break } // only open sessions are left
            report.evictedForSize += n
        }
        if report.deleted > 0 { try reclaim() }
        report.bytesAfter = fileBytes()
        return report
    }

    /// Bytes of the pages in use (the file's size less its free pages).
    public func usedBytes() throws -> UInt64 {
        try pool.read { db in
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            return UInt64(max(0, pages - free) * size)
        }
    }

    /// The database file and its WAL, as the file system counts them.
    public func fileBytes() -> UInt64 {
        [path, path + "-wal"].reduce(0) { sum, p in
            var st = stat()
            return stat(p, &st) == 0 ? sum + UInt64(st.st_size) : sum
        }
    }

    /// Returns free pages to the file system and empties the WAL.
    func reclaim() throws {
        try pool.writeWithoutTransaction { db in
            let mode = try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") ?? 0
            if mode == 2 {
                try db.execute(sql: "PRAGMA incremental_vacuum")
            } else {
                try db.execute(sql: "VACUUM")
            }
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }
}
