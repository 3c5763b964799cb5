import ArgumentParser
import BordergateAudit
import BordergateService
import Foundation

/// `bordergate audit`: the evidence the log gives (README, "Evidence").
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check and export the tamper-evident audit log.",
        subcommands: [Key.self, Verify.self, Export.self])

    struct Key: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "key", abstract: "Print the public key that verifies this host's checkpoints.")

        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                print(try Evidence.publicKey(logDirectory: (common.settings.auditLogPath as NSString).deletingLastPathComponent))
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Verify the log's chain and checkpoints; name the first broken link.",
            discussion: "Exit status 0 only when everything verifies. Default: the state directory's log.")

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("The public key (ed25519:<base64>, as `audit key` prints it) or a file holding it. Default: the key beside the log.", valueName: "pub"))
        var key: String?

        @Option(help: ArgumentHelp("Verify an exported bundle instead of log files.", valueName: "file"))
        var bundle: String?

        @Argument(help: "Log files, in order (the chain continues from one to the next).")
        var files: [String] = []

        func validate() throws {
            if bundle != nil, !files.isEmpty { throw ValidationError("give --bundle or log files, not both") }
        }

        func run() async throws {
            let ok = try await reportingErrors { () -> Bool in
                let report: LogVerifier.Report
                var what: String
                if let bundle {
                    let r = try Evidence.verify(bundle: bundle, key: key)
                    report = r.report
                    what = "bundle \(bundle) (host \(r.manifest.host), \(r.manifest.since) to \(r.manifest.until))"
                    if r.keyFromBundle { print("note: verified with the key the bundle carries, \(r.manifest.key); compare it with the host's `bordergate audit key`") }
                } else {
                    let settings = common.settings
                    // by default the rotated files too, in chain order
                    let paths = files.isEmpty ? AuditLog.chainFiles(logPath: settings.auditLogPath) : files
                    report = try Evidence.verify(files: paths, key: key,
                                                 stateLogDirectory: (settings.auditLogPath as NSString).deletingLastPathComponent)
                    what = paths.joined(separator: ", ")
                }
                for n in report.notes { print("note: \(n)") }
                if let first = report.problems.first {
                    print("FAILED: \(first)")
                    for p in report.problems.dropFirst().prefix(20) { print("  also: \(p)") }
                    if report.problems.count > 21 { print("  and \(report.problems.count - 21) more") }
                    return false
                }
                print("ok: \(what): \(report.events) events, \(report.checkpoints) checkpoints, last seq \(report.lastSeq.map(String.init) ?? "none")")
                return true
            }
            if !ok { throw ExitCode(1) }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write the events of a period, their checkpoints, the key and a README to a .tar.gz.")

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("Start: a duration ago (90s, 15m, 2h, 7d) or an RFC 3339 time.", valueName: "when"))
        var since: String

        @Option(help: ArgumentHelp("End: a duration ago or an RFC 3339 time (default: now).", valueName: "when"))
        var until: String?

        @Option(help: ArgumentHelp("The bundle to write.", valueName: "file.tar.gz"))
        var out: String

        func validate() throws {
            guard EventFilter.parseSince(since) != nil else {
                throw ValidationError("--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(since)'")
            }
            if let until, EventFilter.parseSince(until) == nil {
                throw ValidationError("--until takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(until)'")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let m = try Evidence.export(logPath: common.settings.auditLogPath, since: EventFilter.parseSince(since)!,
                                            until: until.flatMap { EventFilter.parseSince($0) } ?? Date(), to: out)
                print("wrote \(out): \(m.events) events from \(m.since) to \(m.until), seq \(m.first_seq)…\(m.last_seq); verify with: bordergate audit verify --bundle \(out) --key \(m.key)")
            }
        }
    }
}
