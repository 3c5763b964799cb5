import ArgumentParser
import BordergateFleet
import PostgresNIO
import Logging
import BordergateAudit
import BordergateService
import Foundation

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show audit events: history from the log, then live with -f.",
        discussion: """
            Reads from the running daemon, or straight from the audit log when none runs. Filters combine \
            (all must match).

              bordergate events --since 15m --verdict deny
              bordergate events -f --cgroup /ci -o json | jq .destination
            """)

    @OptionGroup var common: CommonOptions

    @Flag(name: .shortAndLong, help: "Keep streaming new events (needs a running daemon).")
    var follow = false

    @Option(help: ArgumentHelp("Only events since a duration ago (90s, 15m, 2h, 7d) or an RFC 3339 time.", valueName: "when"))
    var since: String?

    @Option(name: .shortAndLong, help: "Output: compact (one line per event) or json (the log's JSON, one event per line).")
    var output: EventOutput = .compact

    @Option(help: "Only events of this process id.")
    var pid: Int?

    @Option(help: "Only events of this cgroup and those below it.")
    var cgroup: String?

    @Option(help: "Only events with this verdict: one of a connection (redirect, pass, deny, audit) or of a policy event.")
    var verdict: Verdict?

    @Option(help: "Only events of this type.")
    var type: AuditEvent.Kind?

    @Option(help: "Only events whose destination has this region, country or jurisdiction (aws:eu-west-1, DE, EU).")
    var region: String?

    @Option(help: ArgumentHelp("Only events whose destination hostname matches this glob.", valueName: "glob"))
    var host: String?

    @Option(help: ArgumentHelp("Read the fleet table of this PostgreSQL instead of this host's log (postgresql://USER@HOST/DB).",
                               valueName: "url"))
    var source: String?

    @Option(help: ArgumentHelp("With --source: the table (default bordergate_events).", valueName: "name"))
    var table: String = FleetTarget.defaultTable

    @Option(name: .customLong("from"), help: ArgumentHelp("With --source: only events of reporting hosts whose name matches this glob.", valueName: "glob"))
    var fromHost: String?

    func validate() throws {
        if let source, let problem = FleetTarget.problem(url: source, table: table) {
            throw ValidationError("--source: \(problem)")
        }
        if fromHost != nil, source == nil { throw ValidationError("--from filters the fleet table: give --source too") }
        if let since, EventFilter.parseSince(since) == nil {
            throw ValidationError("--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(since)'")
        }
    }

    var filter: EventFilter {
        EventFilter(since: since.flatMap { EventFilter.parseSince($0) }, pid: pid, cgroup: cgroup,
                    verdict: verdict, type: type, region: region, host: host)
    }

    func run() async throws {
        try await reportingErrors {
            let filter = filter
            if let source {
                try await readFleet(FleetTarget(url: source, table: table), filter: filter)
                return
            }
            let settings = common.settings
            let client = ControlClient(path: settings.controlSocket)
            let decoder = AuditEvent.makeDecoder()
            if !client.isDaemonRunning {
                if follow { _ = try client.call(ControlRequest(command: .ping)) } // says no daemon
                _ = try AuditLog.read(path: settings.auditLogPath, filter: filter) { e, line in Output.event(e, line: line, as: output) }
                return
            }
            try client.send(ControlRequest(command: .events, follow: follow, filter: filter)) { line in
                if let notice = try? JSONDecoder().decode(ControlNotice.self, from: line) {
                    if notice.control == "missed" {
                        Output.error("missed \(notice.count ?? 0) event(s): this reader fell behind; they are in the audit log")
                    }
                    return true
                }
                if let e = try? decoder.decode(AuditEvent.self, from: line) { Output.event(e, line: line, as: output) }
                return true
            }
        }
    }

    /// The fleet table: every host's events, the same filters, the host's name before each.
    func readFleet(_ target: FleetTarget, filter: EventFilter) async throws {
        var quiet = Logger(label: "bordergate.fleet")
        quiet.logLevel = .critical
        let reader = FleetReader(target: target, logger: quiet)
        var sqlFilter = filter
        sqlFilter.since = nil // the query starts there
        do {
            try await read(reader, since: filter.since, filter: sqlFilter)
        } catch let error as PSQLError {
            // PSQLError's description hides everything; the server's own message is what helps
            throw ValidationError("cannot read \(FleetTarget.redacted(target.url)): \(error.serverInfo?[.message] ?? String(describing: error.code))")
        }
    }

    func read(_ reader: FleetReader, since: Date?, filter sqlFilter: EventFilter) async throws {
        try await reader.read(since: since, hostPattern: fromHost, follow: follow) { row in
            guard sqlFilter.matches(row.event) else { return true }
            if output == .json {
                // the host's line with the host in front: one JSON object per event
                Output.event(row.event, line: Data(("{\"host\":\(Self.quoted(row.host)),").utf8) + Data(row.line.utf8.dropFirst()), as: .json)
            } else {
                FileHandle.standardOutput.write(Data("\(row.host)  \(EventFormatter.compact(row.event))\n".utf8))
            }
            return true
        }
    }

    static func quoted(_ s: String) -> String {
        String(decoding: (try? JSONEncoder().encode(s)) ?? Data("\"?\"".utf8), as: UTF8.self)
    }
}
