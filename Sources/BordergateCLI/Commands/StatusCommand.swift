import ArgumentParser
import BordergateAudit
import BordergateService

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what is guarded, the proxy, and counters.",
        discussion: "Asks the running daemon; without one, says whether guards are still pinned (their connections are refused).")

    @OptionGroup var common: CommonOptions

    @Option(name: .shortAndLong, help: "Output: text (a table) or json (for scripts).")
    var output: TextOrJSON = .text

    func run() async throws {
        try await reportingErrors {
            let client = ControlClient(path: common.settings.controlSocket)
            guard client.isDaemonRunning else {
                let pinned = PinnedGuards.guardedCgroups(root: common.settings.pinRoot)
                if !pinned.isEmpty {
                    throw ServiceError("no daemon is running, but \(pinned.count) cgroup(s) are still guarded from \(common.settings.pinRoot): their connections are refused until 'bordergate daemon' starts again (or 'bordergate detach --all')")
                }
                _ = try client.call(ControlRequest(command: .ping)) // throws the no-daemon message
                return
            }
            let r = try client.call(ControlRequest(command: .status))
            guard r.ok, let s = r.status else { throw ServiceError(r.error ?? "status failed") }
            switch output {
            case .json: try Output.json(s)
            case .text: Output.status(s)
            }
        }
    }
}
