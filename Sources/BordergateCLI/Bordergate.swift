import ArgumentParser
import BordergateService
import BordergateAudit
import BordergateKernel
import BordergatePolicy
import BordergateRegions
import Foundation
import Logging

@main
struct BordergateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bordergate",
        abstract: "Keep the network traffic of tools inside the places it is allowed to go.",
        discussion: """
            Every outbound connection of the processes in a guarded cgroup is caught in the kernel, \
            attributed to its process, classified by the region of its destination, allowed or refused \
            by a residency policy, relayed through Bordergate's proxy where needed, and recorded.

              bordergate exec -- curl http://198.51.100.10/     run one command under guard
              bordergate daemon --config /etc/bordergate/config.yaml
              bordergate attach /ci/runner --policy eu-only     guard an existing cgroup
              bordergate events -f                              watch connections live
              bordergate regions lookup 198.51.100.7            which region, and which table says so
            """,
        version: bordergateVersion,
        subcommands: [DaemonCommand.self, ExecCommand.self, AttachCommand.self, DetachCommand.self,
                      StatusCommand.self, EventsCommand.self, ReloadCommand.self, GrantCommand.self,
                      PolicyCommand.self, RegionsCommand.self, AuditCommand.self]
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

    @Option(help: ArgumentHelp("Config file (default /etc/bordergate/config.yaml if it exists, else the built-in policy). Env: BORDERGATE_CONFIG.", valueName: "file"))
    var config: String?

    var settings: Settings {
        Settings(stateDirectory: stateDir, pinRoot: pinRoot, controlSocket: controlSocket, proxyPort: proxyPort,
                 configPath: config)
    }
}

extension CommonOptions {
    /// Sends one request to the daemon and returns its message; a refusal becomes the error.
    func ask(_ request: ControlRequest, doing what: String) throws -> String {
        let r = try ControlClient(path: settings.controlSocket).call(request)
        guard r.ok else { throw ServiceError(r.error ?? "\(what) failed") }
        return r.message ?? "done"
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

    @Option(help: "The policy for the command (default: the config's default policy).")
    var policy: String?

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (put -- before them).")
    var command: [String] = []

    mutating func validate() throws {
        if command.first == "--" { command.removeFirst() }
        if command.isEmpty { throw ValidationError("no command given; usage: bordergate exec [--quiet] -- CMD [ARGS...]") }
    }

    func run() async throws {
        let outcome = try await reportingErrors {
            try await ExecRunner.run(.init(arguments: command, quiet: quiet, policy: policy), settings: common.settings,
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

    @Option(help: "The policy (default: the config's default policy). Attaching again changes it.")
    var policy: String?

    func run() async throws {
        try await reportingErrors {
            print(try common.ask(ControlRequest(command: .attach, cgroup: cgroup, policy: policy), doing: "attach"))
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
            if let c = s.config { print("config      \(c): policies \((s.policies ?? []).joined(separator: ", ")) (default \(s.defaultPolicy ?? "?"))") }
            for (i, t) in (s.tables ?? []).enumerated() { print((i == 0 ? "tables      " : "            ") + t) }
            if let k = s.kernelTables {
                let mem = k.filter { $0.key.hasPrefix("regions") || $0.key == "policy_rows" }.values.reduce(0, +)
                print("kernel maps \(k["ipv4_prefixes"] ?? 0) IPv4 + \(k["ipv6_prefixes"] ?? 0) IPv6 prefixes, \(k["kernel_classes"] ?? 0) verdict classes, \(String(format: "%.1f", Double(mem) / 1048576)) MiB (tries and policy rows)")
            }
            print("guarded     \(s.guards.count) cgroup(s)")
            for g in s.guards {
                print("  \(g.cgroup)  policy \(g.policy), \(g.processes) process(es), id \(g.cgroupID)")
                for grant in g.grants ?? [] { print("    grant \(grant)") }
            }
            print("kernel      " + s.kernel.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            print("proxy       " + s.proxyCounters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            print("audit       " + s.audit.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + " live_readers=\(s.subscribers)")
            if let heap = s.heapInUse { print("memory      heap in use \(String(format: "%.1f", Double(heap) / 1048576)) MiB") }
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

    @Option(help: "Only events with this verdict (redirect, pass, deny, audit).")
    var verdict: String?

    @Option(help: "Only events of this type (connect, close, policy, daemon).")
    var type: String?

    @Option(help: "Only events whose destination has this region, country or jurisdiction (aws:eu-west-1, DE, EU).")
    var region: String?

    @Option(help: ArgumentHelp("Only events whose destination hostname matches this glob.", valueName: "glob"))
    var host: String?

    func validate() throws {
        guard ["compact", "json"].contains(output) else { throw ValidationError("-o takes compact or json") }
        if let since, EventFilter.parseSince(since) == nil {
            throw ValidationError("--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(since)'")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let filter = EventFilter(since: since.flatMap { EventFilter.parseSince($0) }, pid: pid, cgroup: cgroup,
                                     verdict: verdict, type: type, region: region, host: host)
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

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the config and region tables; on any error the daemon keeps what it had.",
        discussion: "The same as sending SIGHUP to the daemon, but says what happened.")

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

struct GrantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grant",
        abstract: "Allow a guarded cgroup one more destination for a while (a just-in-time exception).",
        discussion: """
            --allow takes a country (US), a jurisdiction (EU), a cloud region (aws:us-east-1), a hostname \
            or glob (*.github.com), or KIND=VALUE (region=onprem-1). The grant beats the policy's deny rules \
            and both ends are audit events. The kernel ends it on time even if the daemon has stopped; a \
            restarted daemon does not bring it back.
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

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Work with policy files.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate a config file and the tables it names; errors name file:line:column.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The config file.")
        var file: String

        func run() async throws {
            try await reportingErrors {
                var settings = common.settings
                settings.configPath = file
                let cfg = try ResidencyConfig.load(settings: settings)
                let c = cfg.config
                print("\(file): ok")
                let known = Set(cfg.database.regionClasses)
                for name in c.policyOrder {
                    let p = c.policies[name]!
                    print("  policy \(name)\(name == c.defaultPolicy ? " (default)" : ""): mode \(p.mode.rawValue), \(p.deny.count) deny and \(p.allow.count) allow rule(s), unknown regions \(p.unknown.rawValue), otherwise \(p.effectiveDefault.rawValue)")
                    // A region no table has is legal (tables change) but worth a word.
                    for r in p.allow + p.deny {
                        if case .regions(let rs) = r.target {
                            for region in rs where !known.contains(region) {
                                print("  warning: \(r.origin): region \(region) is in no loaded table; the rule matches nothing yet")
                            }
                        }
                    }
                }
                for (cg, p) in c.cgroups { print("  cgroup \(cg) -> \(p)") }
                for t in cfg.tableNotes { print("  table \(t)") }
            }
        }
    }
}

struct RegionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regions", abstract: "Region tables: look addresses up, compile tables.",
        subcommands: [Lookup.self, Compile.self, Benchmark.self])

    struct Lookup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lookup",
            abstract: "Region, country and jurisdictions of addresses, and which table and prefix said so.")

        @OptionGroup var common: CommonOptions

        @Option(name: .shortAndLong, help: "Output: text or json.")
        var output: String = "text"

        @Flag(help: "Also print how long loading the tables took.")
        var timing = false

        @Argument(help: "IPv4 or IPv6 addresses.")
        var addresses: [String]

        func validate() throws {
            guard ["text", "json"].contains(output) else { throw ValidationError("-o takes text or json") }
            if addresses.isEmpty { throw ValidationError("give at least one address") }
            for a in addresses where IPAddress(a) == nil { throw ValidationError("'\(a)' is not an IPv4 or IPv6 address") }
        }

        func run() async throws {
            try await reportingErrors {
                let started = Date()
                let cfg = try ResidencyConfig.load(settings: common.settings)
                if timing {
                    FileHandle.standardError.write(Data("loaded \(cfg.database.tables.count) table(s) in \(String(format: "%.0f", Date().timeIntervalSince(started) * 1000)) ms\n".utf8))
                }
                for a in addresses {
                    let answer = cfg.database.lookup(IPAddress(a)!)
                    if output == "json" {
                        var obj: [String: Any] = ["ip": a]
                        if let answer {
                            obj["region"] = answer.region
                            obj["country"] = answer.country as Any? ?? NSNull()
                            obj["jurisdictions"] = answer.jurisdictions
                            obj["table"] = answer.table
                            obj["prefix"] = answer.prefix.description
                        } else {
                            obj["region"] = NSNull()
                        }
                        let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                        print(String(decoding: data, as: UTF8.self))
                    } else if let answer {
                        print("\(a)  region \(answer.region)  country \(answer.country ?? "-")  jurisdictions \(answer.jurisdictions.isEmpty ? "-" : answer.jurisdictions.joined(separator: ","))  table \(answer.table)  prefix \(answer.prefix)")
                    } else {
                        print("\(a)  unknown: no loaded table has it")
                    }
                }
            }
        }
    }

    struct Benchmark: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "benchmark", abstract: "Time loading the configured tables and looking addresses up (for scripts/bench).",
            shouldDisplay: false)

        @OptionGroup var common: CommonOptions

        @Option(help: "Lookups per family.")
        var count = 1_000_000

        func run() async throws {
            try await reportingErrors {
                let clock = ContinuousClock()
                var cfg: ResidencyConfig?
                let load = try clock.measure { cfg = try ResidencyConfig.load(settings: common.settings) }
                let db = cfg!.database
                var rng = SystemRandomNumberGenerator()
                let v4 = (0..<count).map { _ in IPAddress(ipv4: UInt32.random(in: 0...UInt32.max, using: &rng)) }
                // IPv6 from the allocated space (2000::/3), where the tables have entries
                let v6 = (0..<count).map { _ in IPAddress(value: (UInt128(0x2) << 125) | (UInt128(UInt64.random(in: 0...UInt64.max, using: &rng)) << 61)) }
                var hits = 0
                let t4 = clock.measure { for ip in v4 where db.lookup(ip) != nil { hits += 1 } }
                let t6 = clock.measure { for ip in v6 where db.lookup(ip) != nil { hits += 1 } }
                func ns(_ d: Duration) -> Double { Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9 }
                let prefixes = db.tables.reduce(0) { $0 + $1.ipv4Count + $1.ipv6Count }
                print("{\"prefixes\":\(prefixes),\"load_ms\":\((ns(load) / 1e6).rounded()),\"lookup_ns_ipv4\":\((ns(t4) / Double(count) * 10).rounded() / 10),\"lookup_ns_ipv6\":\((ns(t6) / Double(count) * 10).rounded() / 10),\"hits\":\(hits)}")
            }
        }
    }

    struct Compile: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compile",
            abstract: "Read region tables in any supported format and write Bordergate's compiled table.",
            discussion: "Each INPUT is PATH, PATH:FORMAT or PATH:FORMAT:NAME. Formats: \(RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", ")). Earlier inputs win on equal prefixes.")

        @Option(help: "Where to write the compiled table.")
        var out: String

        @Argument(help: "Input tables.")
        var inputs: [String]

        func run() async throws {
            try await reportingErrors {
                var tables: [RegionTable] = []
                for input in inputs {
                    let parts = input.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                    var format: RegionTableFormat?
                    if parts.count > 1 {
                        guard let f = RegionTableFormat(rawValue: parts[1]) else {
                            throw ServiceError("\(input): unknown format '\(parts[1])'; expected one of \(RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        format = f
                    }
                    let read = try RegionTableReader.read(path: parts[0], format: format, name: parts.count > 2 ? parts[2] : nil)
                    for t in read { print("\(t.name): \(t.entries.count) prefixes from \(parts[0])") }
                    tables += read
                }
                let bytes = CompiledRegionTables.encode(tables)
                let dir = (out as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                let tmp = out + ".new"
                guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
                    throw ServiceError("cannot write \(tmp): \(String(cString: strerror(errno)))")
                }
                guard rename(tmp, out) == 0 else { throw ServiceError("cannot replace \(out): \(String(cString: strerror(errno)))") }
                print("wrote \(out) (\(bytes.count) bytes)")
            }
        }
    }
}
