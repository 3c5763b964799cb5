import ArgumentParser
import Bordergate
import BordergateAudit
import BordergateKernel
import Foundation
import Logging

@main
struct BordergateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bordergate",
        abstract: "Keep the network traffic of tools inside the places it is allowed to go.",
        discussion: """
            Every outbound TCP connection of the processes in a guarded cgroup is caught in the kernel, \
            attributed to its process, relayed through Bordergate's proxy and recorded.

              bordergate exec -- curl http://198.51.100.10/     run one command under guard
              bordergate daemon                                 run the interceptor for attach/events
              bordergate attach /ci/runner                      guard an existing cgroup
              bordergate events -f                              watch connections live
            """,
        version: bordergateVersion,
        subcommands: [DaemonCommand.self, ExecCommand.self, AttachCommand.self, DetachCommand.self,
                      StatusCommand.self, EventsCommand.self]
    )
}

/// Paths and ports every command may override (flags win over environment over defaults).
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("State directory (audit log). Env: BORDERGATE_STATE_DIR.", valueName: "dir"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Where kernel objects are pinned in bpffs. Env: BORDERGATE_PIN_ROOT.", valueName: "dir"))
    var pinRoot: String?

    @Option(help: ArgumentHelp("The daemon's control socket. Env: BORDERGATE_CONTROL_SOCKET.", valueName: "path"))
    var controlSocket: String?

    @Option(help: ArgumentHelp("The proxy's port on 127.0.0.1 and ::1. Env: BORDERGATE_PROXY_PORT.", valueName: "port"))
    var proxyPort: Int?

    var settings: Settings {
        Settings(stateDirectory: stateDir, pinRoot: pinRoot, controlSocket: controlSocket, proxyPort: proxyPort)
    }
}

func makeLogger(default level: Logger.Level) -> Logger {
    var logger = Logger(label: "bordergate") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = ProcessInfo.processInfo.environment["BORDERGATE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
    return logger
}

/// Runs a command body; a failure becomes one line on stderr and exit status 1.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch {
        FileHandle.standardError.write(Data("bordergate: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the interceptor: kernel programs, proxy, audit log and control socket.",
        discussion: "Guards survive the daemon: if it stops, guarded connections are refused until it returns.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await reportingErrors {
            try await Daemon.run(settings: common.settings, logger: makeLogger(default: .info))
        }
    }
}

struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a fresh guarded cgroup and summarize its connections.",
        discussion: "Uses the daemon when one runs; otherwise brings the interceptor up for the life of the command.")

    @OptionGroup var common: CommonOptions

    @Flag(name: .shortAndLong, help: "Do not print the connection summary.")
    var quiet = false

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (put -- before them).")
    var command: [String] = []

    mutating func validate() throws {
        if command.first == "--" { command.removeFirst() }
        if command.isEmpty { throw ValidationError("no command given; usage: bordergate exec [--quiet] -- CMD [ARGS...]") }
    }

    func run() async throws {
        let outcome = try await reportingErrors {
            try await ExecRunner.run(.init(arguments: command, quiet: quiet), settings: common.settings,
                                     logger: makeLogger(default: .warning))
        }
        outcome.passOn()
    }
}

struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Guard an existing cgroup and everything below it (e.g. a CI runner's).",
        discussion: "CGROUP is relative to the cgroup v2 root (/ci/runner) or absolute (/sys/fs/cgroup/ci/runner).")

    @OptionGroup var common: CommonOptions

    @Argument(help: "The cgroup to guard.")
    var cgroup: String

    func run() async throws {
        try await reportingErrors {
            let r = try ControlClient(path: common.settings.controlSocket).call(ControlRequest(command: .attach, cgroup: cgroup))
            guard r.ok else { throw ServiceError(r.error ?? "attach failed") }
            print(r.message ?? "attached")
        }
    }
}

struct DetachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach",
        abstract: "Remove the guard from a cgroup, or from every cgroup with --all.",
        discussion: "Works without a daemon too: it then removes the pinned guard directly.")

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
            try Preflight.requireRoot(for: "bordergate detach")
            if all {
                let ids = KernelGuard.detachAllPinned(root: settings.pinRoot)
                print(ids.isEmpty ? "nothing was guarded; removed \(settings.pinRoot)" : "detached \(ids.count) cgroup(s); removed \(settings.pinRoot)")
                return
            }
            let cgroups = try CgroupV2.discover()
            let dir = cgroups.directory(for: cgroup!)
            let id = try cgroups.id(ofDirectory: dir)
            guard KernelGuard.detachPinned(root: settings.pinRoot, cgroupID: id) else {
                throw ServiceError("\(cgroup!) is not guarded")
            }
            print("detached \(cgroups.relativeName(ofDirectory: dir))")
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show what is guarded, the proxy, and counters.")

    @OptionGroup var common: CommonOptions

    @Option(name: .shortAndLong, help: "Output: text or json.")
    var output: String = "text"

    func run() async throws {
        try await reportingErrors {
            let client = ControlClient(path: common.settings.controlSocket)
            guard client.isDaemonRunning else {
                let pinned = KernelGuard.pinnedCgroups(root: common.settings.pinRoot)
                if !pinned.isEmpty {
                    throw ServiceError("no daemon is running, but \(pinned.count) cgroup(s) are still guarded from \(common.settings.pinRoot): their connections are refused until 'bordergate daemon' starts again (or 'bordergate detach --all')")
                }
                _ = try client.call(ControlRequest(command: .ping)) // throws the no-daemon message
                return
            }
            let r = try client.call(ControlRequest(command: .status))
            guard r.ok, let s = r.status else { throw ServiceError(r.error ?? "status failed") }
            if output == "json" {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                enc.dateEncodingStrategy = .iso8601
                print(String(decoding: try enc.encode(s), as: UTF8.self))
                return
            }
            print("daemon      pid \(s.pid), version \(s.version), up since \(AuditTime.format(s.startedAt))")
            print("proxy       \(s.proxy.joined(separator: ", "))")
            print("pins        \(s.pinRoot)")
            print("audit log   \(s.auditLog)")
            print("cgroup v2   \(s.cgroupRoot)")
            print("programs    \(s.programs.joined(separator: " "))")
            print("guarded     \(s.guards.count) cgroup(s)")
            for g in s.guards { print("  \(g.cgroup)  policy \(g.policy), \(g.processes) process(es), id \(g.cgroupID)") }
            print("kernel      " + s.kernel.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            print("proxy       " + s.proxyCounters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            print("audit       " + s.audit.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + " live_readers=\(s.subscribers)")
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show audit events: history from the log, then live with -f.")

    @OptionGroup var common: CommonOptions

    @Flag(name: .shortAndLong, help: "Keep streaming new events.")
    var follow = false

    @Option(help: ArgumentHelp("Only events since a duration ago (90s, 15m, 2h, 7d) or an RFC 3339 time.", valueName: "when"))
    var since: String?

    @Option(name: .shortAndLong, help: "Output: compact or json (one event per line).")
    var output: String = "compact"

    @Option(help: "Only events of this process id.")
    var pid: Int?

    @Option(help: "Only events of this cgroup and those below it.")
    var cgroup: String?

    @Option(help: "Only events with this verdict (redirect, pass, deny).")
    var verdict: String?

    @Option(help: "Only events of this type (connect, close, policy, daemon).")
    var type: String?

    func validate() throws {
        guard ["compact", "json"].contains(output) else { throw ValidationError("-o takes compact or json") }
        if let since, EventFilter.parseSince(since) == nil {
            throw ValidationError("--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(since)'")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let filter = EventFilter(since: since.flatMap { EventFilter.parseSince($0) }, pid: pid, cgroup: cgroup,
                                     verdict: verdict, type: type)
            let settings = common.settings
            let client = ControlClient(path: settings.controlSocket)
            let decoder = AuditEvent.makeDecoder()
            let json = output == "json"
            func show(_ e: AuditEvent, _ line: Data) {
                // unbuffered: a live stream piped to another tool must not sit in a buffer
                var out = json ? line : Data(EventFormatter.compact(e).utf8)
                out.append(UInt8(ascii: "\n"))
                FileHandle.standardOutput.write(out)
            }
            if !client.isDaemonRunning {
                if follow { _ = try client.call(ControlRequest(command: .ping)) } // says no daemon
                _ = try AuditLog.read(path: settings.auditLogPath, filter: filter) { e, line in show(e, line) }
                return
            }
            try client.send(ControlRequest(command: .events, follow: follow, filter: filter)) { line in
                if let notice = try? JSONDecoder().decode(ControlNotice.self, from: line) {
                    if notice.control == "missed" {
                        FileHandle.standardError.write(Data("bordergate: missed \(notice.count ?? 0) event(s): this reader fell behind; they are in the audit log\n".utf8))
                    }
                    return true
                }
                if let e = try? decoder.decode(AuditEvent.self, from: line) { show(e, line) }
                return true
            }
        }
    }
}
