import ArgumentParser
import BordergateAudit

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the config and region tables; on any error the daemon keeps what it had.",
        discussion: "The same as sending SIGHUP to the daemon, but says what happened. Check a file first with 'bordergate policy check FILE'.")

    @OptionGroup var common: CommonOptions

    func validate() throws {
        if common.config != nil {
            throw ValidationError("reload re-reads the file the daemon was started with; to use another, restart the daemon with --config")
        }
    }

    func run() async throws {
        try await reportingErrors {
            print(try common.ask(ControlRequest(command: .reload), doing: "reload"))
        }
    }
}
