import ArgumentParser
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

    func validate() throws {
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
}
