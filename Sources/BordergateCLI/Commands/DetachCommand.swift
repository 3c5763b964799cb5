import ArgumentParser
import BordergateAudit
import BordergateService

struct DetachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach",
        abstract: "Remove the guard from a cgroup, or from every cgroup with --all.",
        discussion: """
            Works without a daemon too: it then removes the pinned guard directly.

              sudo bordergate detach /ci/runner
              sudo bordergate detach --all
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "The cgroup to release.")
    var cgroup: String?

    @Flag(help: "Remove every guard and all pinned state.")
    var all = false

    func validate() throws {
        if (cgroup == nil) == !all { throw ValidationError("name a cgroup, or pass --all") }
    }

    func run() async throws {
        try await reportingErrors {
            let settings = common.settings
            let client = ControlClient(path: settings.controlSocket)
            if client.isDaemonRunning {
                let r = try client.call(ControlRequest(command: .detach, cgroup: cgroup, all: all))
                guard r.ok else { throw ServiceError(r.error ?? "detach failed") }
                print(r.message ?? "detached")
                return // the running daemon keeps its maps and process table; only its guards went
            }
            // No daemon: the pins are the guard; remove them directly.
            if all {
                let ids = try PinnedGuards.detachAll(root: settings.pinRoot, action: "bordergate detach")
                print(ids.isEmpty ? "nothing was guarded; removed \(settings.pinRoot)" : "detached \(ids.count) cgroup(s); removed \(settings.pinRoot)")
                return
            }
            let name = try PinnedGuards.detach(root: settings.pinRoot, cgroup: cgroup!, action: "bordergate detach")
            print("detached \(name)")
        }
    }
}
