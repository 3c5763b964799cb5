import ArgumentParser
import BordergateService
import Logging

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the interceptor: kernel programs, proxy, audit log and control socket.",
        discussion: """
            Runs in the foreground until SIGTERM or SIGINT; SIGHUP (or 'bordergate reload') re-reads the \
            config. Guards survive the daemon: if it stops, guarded connections are refused until it returns.

              sudo bordergate daemon --config /etc/bordergate/config.yaml
            """)

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await reportingErrors {
            try await Daemon.run(settings: common.settings, logger: makeLogger(default: .info))
        }
    }
}
