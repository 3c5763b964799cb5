import ArgumentParser
import BordergateService
import Logging

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a fresh guarded cgroup and summarize its connections.",
        discussion: """
            Uses the daemon when one runs; otherwise brings the interceptor up for the life of the command. \
            Exits as the command did (its status, or its signal). Everything after the command's name is \
            the command's own, so put Bordergate's options first:

              sudo bordergate exec -- curl -sS https://example.com/
              sudo bordergate exec --policy eu-only --quiet -- ./deploy.sh
              sudo bordergate exec --user build -- make test

            Under sudo the command runs as the user who ran sudo (their groups and HOME), with no \
            capabilities and no_new_privs, under a seccomp filter that refuses pidfd_getfd, ptrace attach, \
            process_vm_writev and packet/XDP/vsock sockets; --user root keeps root.
            """)

    @OptionGroup var common: CommonOptions

    @Flag(name: .shortAndLong, help: "Do not print the connection summary.")
    var quiet = false

    @Option(help: ArgumentHelp("The policy for the command (default: the config's default policy).", valueName: "name"))
    var policy: String?

    @Option(help: ArgumentHelp("Run the command as this user (and group), like sudo -u. Default: under sudo, the user who ran sudo; --user root keeps root, which can leave the guard.",
                               valueName: "user[:group]"))
    var user: String?

    @Flag(help: "Let setuid programs (sudo, su) raise the command's privileges: no_new_privs stays off. A command that becomes root can leave the guard.")
    var allowSetuid = false

    /// Everything after exec's own options, as given: with its leading `--` if there was one.
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments (put -- before them).", valueName: "command"))
    var passthrough: [String] = []

    /// The command to run: what follows the `--`, or everything when there is none.
    var command: [String] { passthrough.first == "--" ? Array(passthrough.dropFirst()) : passthrough }

    /// Passthrough parsing hands exec's own help flag over as the command; only `--` before it
    /// makes it one (`exec -- --help` runs a program named --help).
    static let helpFlags: Set<String> = ["-h", "--help", "-help"]

    // Not mutating: ArgumentParser may validate a parsed command more than once.
    func validate() throws {
        if let first = passthrough.first, Self.helpFlags.contains(first) { throw CleanExit.helpRequest(self) }
        if command.isEmpty { throw ValidationError("no command given; usage: bordergate exec [--quiet] [--policy NAME] -- CMD [ARGS...]") }
    }

    func run() async throws {
        let outcome = try await reportingErrors {
            try await ExecRunner.run(.init(arguments: command, quiet: quiet, policy: policy, user: user, allowSetuid: allowSetuid),
                                     settings: common.settings,
                                     logger: makeLogger(default: .warning))
        }
        outcome.passOn()
    }
}
