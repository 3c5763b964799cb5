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
            Reads from the running daemon, or straight from the audit log when none runs, or from a \
            saved file (--input). Filters combine (all must match); --not before a filter turns it into \
            one that must not match.

              bordergate events --since 15m --verdict deny
              bordergate events -f --cgroup /ci -o json | jq .destination
              bordergate events --last 20 --not --verdict pass -o table
              bordergate events --input saved.jsonl --host '*.example.com' --until 1h
              bordergate --generate-completion-script bash > /etc/bash_completion.d/bordergate
            """)

    @OptionGroup var common: CommonOptions

    @Flag(name: .shortAndLong, help: "Keep streaming new events (needs a running daemon).")
    var follow = false

    @Option(help: ArgumentHelp("Only events since a duration ago (90s, 15m, 2h, 7d) or an RFC 3339 time.", valueName: "when"))
    var since: String?

    @Option(help: ArgumentHelp("Only events up to a duration ago or an RFC 3339 time.", valueName: "when"))
    var until: String?

    @Option(help: ArgumentHelp("Write the events to this file instead of standard output (appended).", valueName: "file"))
    var outputFile: String?

    @Option(name: .shortAndLong, help: "Output: compact (one line per event), json (the log's JSON, one event per line) or table (columns with a header).")
    var output: EventOutput = .compact

    @Option(help: ArgumentHelp("Only the last N matching events of the history (then live ones with -f).", valueName: "n"))
    var last: Int?

    @Option(help: ArgumentHelp("Read events from this file (JSON lines, as -o json or the audit log write them) instead of the daemon or the log.", valueName: "file"))
    var input: String?

    @Flag(name: .customLong("not"), help: "Negate the filter option that follows (--not --verdict pass).")
    var negations: Int

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
        if let until, EventFilter.parseSince(until) == nil {
            throw ValidationError("--until takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(until)'")
        }
        if let last, last < 1 { throw ValidationError("--last takes a number of events, 1 or more") }
        if input != nil, follow { throw ValidationError("--input reads a saved file; -f follows a running daemon: give one") }
        if negations > 0, Self.negatedOptions(in: Array(CommandLine.arguments.dropFirst())).count < negations {
            throw ValidationError("--not goes right before a filter option: one of \(Self.negatable.sorted().map { "--" + $0 }.joined(separator: ", "))")
        }
    }

    var filter: EventFilter { filter(negating: Self.negatedOptions(in: Array(CommandLine.arguments.dropFirst()))) }

    /// The options named in `negated` go into a filter the events must not match.
    func filter(negating negated: Set<String>) -> EventFilter {
        var yes = EventFilter(since: since.flatMap { EventFilter.parseSince($0) })
        yes.until = until.flatMap { EventFilter.parseSince($0) }
        var no = EventFilter()
        func put<T>(_ name: String, _ value: T?, _ key: WritableKeyPath<EventFilter, T?>) {
            guard let value else { return }
            if negated.contains(name) { no[keyPath: key] = value } else { yes[keyPath: key] = value }
        }
        put("pid", pid, \.pid)
        put("cgroup", cgroup, \.cgroup)
        put("verdict", verdict, \.verdict)
        put("type", type, \.type)
        put("region", region, \.region)
        put("host", host, \.host)
        if !no.isEmpty { yes.not = [no] }
        return yes
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
            let sink = try EventsSink(format: output, last: last, file: outputFile)
            if let input {
                guard FileManager.default.fileExists(atPath: input) else { throw ServiceError("no file \(input) to read events from") }
                _ = try AuditLog.read(path: input, filter: filter) { e, line in sink.event(e, line: line) }
                sink.historyEnded()
                return
            }
            if !client.isDaemonRunning {
                if follow { _ = try client.call(ControlRequest(command: .ping)) } // says no daemon
                for file in AuditLog.rotatedHistory(logPath: settings.auditLogPath, since: filter.since) + [settings.auditLogPath] {
                    _ = try AuditLog.read(path: file, filter: filter) { e, line in sink.event(e, line: line) }
                }
                sink.historyEnded()
                return
            }
            defer { sink.historyEnded() } // a daemon that went away mid-history
            try client.send(ControlRequest(command: .events, follow: follow, filter: filter)) { line in
                if let notice = try? JSONDecoder().decode(ControlNotice.self, from: line) {
                    if notice.control == "history-end" { sink.historyEnded() }
                    if notice.control == "missed" {
                        Output.error("missed \(notice.count ?? 0) event(s): this reader fell behind; they are in the audit log")
                    }
                    return true
                }
                if let e = try? decoder.decode(AuditEvent.self, from: line) { sink.event(e, line: line) }
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
