import ArgumentParser
import BordergateAudit
import Foundation

struct GrantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Allow a guarded cgroup one more destination for a while (a just-in-time exception).",
        discussion: """
            --allow takes a country (US), a jurisdiction (EU), a cloud region (aws:us-east-1), a hostname \
            or glob (*.github.com), or KIND=VALUE (region=onprem-1). The grant beats the policy's deny rules \
            and both ends are audit events. The kernel ends it on time even if the daemon has stopped; a \
            restarted daemon does not bring it back.

              sudo bordergate grant --cgroup /ci/runner --allow US --for 15m --reason "release upload"
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The guarded cgroup.")
    var cgroup: String

    @Option(help: "What to allow.")
    var allow: String

    @Option(name: .customLong("for"), help: ArgumentHelp("How long: 90s, 15m, 2h, 1d.", valueName: "duration"))
    var duration: String

    @Option(help: "Why (recorded in the audit log).")
    var reason: String

    func validate() throws {
        guard Self.seconds(duration) != nil else {
            throw ValidationError("--for takes a duration such as 90s, 15m, 2h or 1d, not '\(duration)'")
        }
        if reason.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--reason must say why") }
    }

    static func seconds(_ text: String) -> Double? {
        EventFilter.parseDuration(text).flatMap { $0 > 0 ? $0 : nil }
    }

    func run() async throws {
        try await reportingErrors {
            let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? String(cString: getpwuid(getuid())?.pointee.pw_name ?? strdup("?"))
            print(try common.ask(
                ControlRequest(command: .grant, cgroup: cgroup, allow: allow, seconds: Self.seconds(duration), reason: reason, user: user), doing: "grant"))
        }
    }
}
