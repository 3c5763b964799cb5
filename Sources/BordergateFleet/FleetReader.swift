import BordergateAudit
import Foundation
import Logging
import PostgresNIO

/// Reads the fleet table back for `bordergate events --source`: every host's events in time
/// order, page by page, the same filters applied as to a local log.
public struct FleetReader: Sendable {
    public let target: FleetTarget
    let logger: Logger

    public init(target: FleetTarget, logger: Logger) {
        self.target = target
        self.logger = logger
    }

    public struct Row: Sendable {
        public var host: String
        public var event: AuditEvent
        /// The log's line as the host wrote it.
        public var line: String
    }

    /// Calls `each` for every row since `since` from hosts matching `hostPattern` (SQL LIKE, `*`
    /// as `%`), oldest first; with `follow`, keeps polling for new rows until `each` returns false
    /// or the task is cancelled.
    public func read(since: Date?, hostPattern: String?, follow: Bool, _ each: (Row) -> Bool) async throws {
        let client = try target.client(logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let decoder = AuditEvent.makeDecoder()
            var after: (time: Date, host: String, seq: Int64) = (since ?? Date(timeIntervalSince1970: 0), "", -1)
            let like = (hostPattern ?? "*").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "*", with: "%")
            while !Task.isCancelled {
                let sql = """
                    SELECT time, host, seq, line FROM \(target.quotedTable)
                    WHERE (time, host, seq) > ($1, $2, $3) AND host LIKE $4
                    ORDER BY time, host, seq LIMIT 5000
                    """
                var binds = PostgresBindings(capacity: 4)
                binds.append(after.time)
                binds.append(after.host)
                binds.append(after.seq)
                binds.append(like)
                let rows = try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
                var count = 0
                for try await (time, host, seq, line) in rows.decode((Date, String, Int64, String).self) {
                    count += 1
                    after = (time, host, seq)
                    guard let event = try? decoder.decode(AuditEvent.self, from: Data(line.utf8)) else { continue }
                    if event.type == .checkpoint { continue }
                    if !each(Row(host: host, event: event, line: line)) { return }
                }
                if count == 5000 { continue }
                if !follow { return }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}
