import ArgumentParser
import BordergateAudit

struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Guard an existing cgroup and everything below it (e.g. a CI runner's).",
        discussion: """
            CGROUP is relative to the cgroup v2 root (/ci/runner) or absolute (/sys/fs/cgroup/ci/runner). \
            Needs a running daemon ('bordergate daemon').

              sudo bordergate attach /ci/runner --policy eu-only
            """)

    @OptionGroup var common: CommonOptions

    @Argument(help: "The cgroup to guard.")
    var cgroup: String

    @Option(help: ArgumentHelp("The policy (default: the config's default policy). Attaching again changes it.", valueName: "name"))
    var policy: String?

    func run() async throws {
        try await reportingErrors {
            print(try common.ask(ControlRequest(command: .attach, cgroup: cgroup, policy: policy), doing: "attach"))
        }
    }
}
