import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO

/// Ships every line of this host's audit log to the fleet table, in batches, at least once and
/// idempotently by (host, seq), from a cursor kept in the state directory. PostgreSQL being down
/// loses nothing: the log is the backlog, and the cursor moves only after a batch is committed.
public final class FleetExporter: Sendable {
    public let target: FleetTarget
    public let hostName: String
    let logPath: String
    let cursorPath: String
    let logger: Logger
    /// Lines per INSERT: a round trip per batch is what bounds the rate.
    static let batch = 5000

    public struct Status: Sendable, Equatable {
        /// The last `seq` PostgreSQL has.
        public var exportedSeq: Int64 = 0
        /// Whether the last attempt reached PostgreSQL.
        public var connected = false
        /// The last error, while it lasts.
        public var error: String?
    }
    private let state = NIOLockedValueBox(Status())
    public var status: Status { state.withLockedValue { $0 } }

    public init(target: FleetTarget, hostName: String, logPath: String, cursorPath: String, logger: Logger) {
        self.target = target
        self.hostName = hostName
        self.logPath = logPath
        self.cursorPath = cursorPath
        self.logger = logger
    }

    /// Runs until cancelled.
    public func run() async {
        let client: PostgresClient
        do {
            client = try target.client(logger: logger)
        } catch {
            logger.error("export: \(FleetTarget.redacted(target.url)) is not a usable PostgreSQL URL; nothing is exported")
            return
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            await self.ship(with: client)
            group.cancelAll()
        }
    }

    private func ship(with client: PostgresClient) async {
        var tail = LogTail(logPath: logPath, position: loadCursor())
        state.withLockedValue { $0.exportedSeq = tail.position.seq }
        var schemaReady = false
        var backoff = Duration.milliseconds(500)
        while !Task.isCancelled {
            do {
                if !schemaReady {
                    for statement in target.schema { try await client.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    schemaReady = true
                }
                let (lines, next) = try tail.next(limit: Self.batch)
                if !lines.isEmpty { try await insert(lines, client: client) }
                if next != tail.position {
                    tail.position = next
                    saveCursor(next)
                }
                recovered()
                backoff = .milliseconds(500)
                if lines.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
            } catch is CancellationError {
                return
            } catch {
                failed(error)
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(10))
            }
        }
    }

    private func insert(_ lines: [ExportLine], client: PostgresClient) async throws {
        var binds = PostgresBindings(capacity: 6)
        binds.append(Array(repeating: hostName, count: lines.count))
        binds.append(lines.map(\.seq))
        binds.append(lines.map(\.time))
        binds.append(lines.map(\.type))
        binds.append(lines.map { $0.verdict ?? "" })
        binds.append(lines.map(\.line))
        let sql = """
            INSERT INTO \(target.quotedTable) (host, seq, time, type, verdict, line, event)
            SELECT h, s, t::timestamptz, y, NULLIF(v, ''), l, l::jsonb
            FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(h, s, t, y, v, l)
            ON CONFLICT (host, seq) DO NOTHING
            """
        try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
        let last = lines.last!.seq
        state.withLockedValue { $0.exportedSeq = last }
    }

    private func failed(_ error: Error) {
        let text = "\(String(reflecting: error))".prefix(300)
        let first = state.withLockedValue { s -> Bool in
            let was = s.connected || s.error == nil
            s.connected = false
            s.error = String(text)
            return was
        }
        if first {
            logger.error("export: cannot ship events to \(FleetTarget.redacted(target.url)) (\(text)); retrying, nothing is lost (the log is the backlog)")
        }
    }

    private func recovered() {
        let wasDown = state.withLockedValue { s -> Bool in
            let was = s.error != nil
            s.connected = true
            s.error = nil
            return was
        }
        if wasDown { logger.notice("export: shipping to \(FleetTarget.redacted(target.url)) again") }
    }

    func loadCursor() -> LogPosition {
        guard let data = FileManager.default.contents(atPath: cursorPath),
              let p = try? JSONDecoder().decode(LogPosition.self, from: data) else { return LogPosition() }
        return p
    }

    func saveCursor(_ p: LogPosition) {
        guard let data = try? JSONEncoder().encode(p) else { return }
        let dir = (cursorPath as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = cursorPath + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: data) { _ = rename(tmp, cursorPath) }
    }
}
