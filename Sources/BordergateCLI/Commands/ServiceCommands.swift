import ArgumentParser
import BordergateService

/// `bordergate install-service`: Bordergate as a systemd service (README, "Running as a service").
struct InstallServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Write the systemd unit for the daemon (bordergate.service) and reload systemd.",
        discussion: "The unit runs this binary's 'daemon' (Type=notify, restart on failure, hardened but able to load BPF); 'systemctl reload bordergate' sends SIGHUP. The same unit is contrib/bordergate.service.")

    @Option(help: ArgumentHelp("Where to write the unit.", valueName: "dir"))
    var unitDir: String = SystemdUnit.defaultDirectory

    @Option(help: ArgumentHelp("The bordergate binary ExecStart runs (default: this one).", valueName: "path"))
    var binary: String?

    @Flag(help: "Do not run systemctl daemon-reload.")
    var noReload = false

    func run() async throws {
        try await reportingErrors {
            for line in try ServiceInstaller.install(directory: unitDir, binary: binary ?? ServiceInstaller.currentBinary,
                                                     reload: !noReload) { print(line) }
        }
    }
}

/// `bordergate uninstall-service`: the reverse; the guards stay (fail closed).
struct UninstallServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall-service",
        abstract: "Stop and disable bordergate.service, remove its unit and reload systemd.",
        discussion: "Guards stay pinned and refuse guarded connections until a daemon returns; 'bordergate detach --all' removes them.")

    @Option(help: ArgumentHelp("Where the unit is.", valueName: "dir"))
    var unitDir: String = SystemdUnit.defaultDirectory

    @Flag(help: "Do not run systemctl (no stop, disable or daemon-reload).")
    var noReload = false

    func run() async throws {
        try await reportingErrors {
            for line in try ServiceInstaller.uninstall(directory: unitDir, reload: !noReload) { print(line) }
        }
    }
}
