import ArgumentParser
import BordergateService

@main
struct BordergateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bordergate",
        abstract: "Keep the network traffic of tools inside the places it is allowed to go.",
        discussion: """
            Every outbound connection of the processes in a guarded cgroup is caught in the kernel, \
            attributed to its process, classified by the region of its destination, allowed or refused \
            by a residency policy, relayed through Bordergate's proxy where needed, and recorded.

            Most commands need root. Start with one command under guard, then run a daemon:

              bordergate exec -- curl http://198.51.100.10/     run one command under guard
              bordergate daemon --config /etc/bordergate/config.yaml
              bordergate attach /ci/runner --policy eu-only     guard an existing cgroup
              bordergate events -f                              watch connections live
              bordergate sessions list --since 1h               recorded sessions (show, replay, export)
              bordergate regions lookup 198.51.100.7            which region, and which table says so
              bordergate install-service                        run the daemon as a systemd service

            'bordergate help COMMAND' (or 'bordergate COMMAND --help') explains one command.
            """,
        version: bordergateVersion,
        subcommands: [DaemonCommand.self, ExecCommand.self, AttachCommand.self, DetachCommand.self,
                      StatusCommand.self, EventsCommand.self, ReloadCommand.self, GrantCommand.self,
                      PolicyCommand.self, RegionsCommand.self, AuditCommand.self, SessionsCommand.self, CACommand.self,
                      InstallServiceCommand.self, UninstallServiceCommand.self,
                      PendingCommand.self, ApproveCommand.self, RejectCommand.self]
    )
}
