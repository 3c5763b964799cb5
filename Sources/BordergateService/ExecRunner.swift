import BordergateAudit
import BordergateKernel
import BordergateProxy
import Foundation
import Logging

/// `bordergate exec -- CMD...`: runs CMD in a fresh guarded cgroup. Through the daemon when one
/// runs; otherwise standalone, with an interceptor that lives exactly as long as CMD.
public enum ExecRunner {
    public struct Options: Sendable {
        public var arguments: [String]
        public var quiet: Bool
        /// The policy for the command's cgroup; the config's default when nil.
        public var policy: String?
        /// `--user USER[:GROUP]`; nil: the user who ran sudo, or the caller.
        public var user: String?
        /// Leave no_new_privs off so setuid binaries work (and can raise privileges).
        public var allowSetuid: Bool
        public init(arguments: [String], quiet: Bool, policy: String? = nil, user: String? = nil, allowSetuid: Bool = false) {
            self.arguments = arguments
            self.quiet = quiet
            self.policy = policy
            self.user = user
            self.allowSetuid = allowSetuid
        }
    }

    /// How the command ended.
    public enum Outcome: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)

        init(waitStatus status: Int32) {
            let sig = status & 0x7f
            self = sig == 0 ? .exited((status >> 8) & 0xff) : .signaled(sig)
        }

        /// Ends this process the way the command ended: the same exit status, or death by the
        /// same signal (so a shell sees what it would have seen without Bordergate).
        public func passOn() -> Never {
            switch self {
            case .exited(let code):
                exit(code)
            case .signaled(let sig):
                signal(sig, SIG_DFL)
                var none = sigset_t()
                sigemptyset(&none)
                sigprocmask(SIG_SETMASK, &none, nil)
                kill(getpid(), sig)
                exit(128 + sig)
            }
        }
    }

    /// Runs the command and reports how it ended. Everything is cleaned up (guard, cgroup, summary)
    /// before this returns, so the caller may pass the ending on with ``Outcome/passOn()``.
    public static func run(_ options: Options, settings: Settings, logger: Logger) async throws -> Outcome {
        _ = ChildProcess.originalOpenFileLimit // remembered before the proxy raises it
        let environment = ProcessInfo.processInfo.environment
        let privileges = try ExecPrivileges.resolve(user: options.user, allowSetuid: options.allowSetuid,
                                                    environment: environment, euid: geteuid())
        let cgroups = try Preflight.check(for: "bordergate exec")
        let client = ControlClient(path: settings.controlSocket)
        let viaDaemon = client.isDaemonRunning
        let dir = cgroups.directory(for: "/bordergate/exec-\(getpid())-\(UInt32.random(in: 0...UInt32.max) % 100000)")
        try cgroups.create(dir)
        let cgroupName = cgroups.relativeName(ofDirectory: dir)
        defer { cgroups.remove(dir) }
        let started = Date()
        let command = (options.arguments.first as NSString?)?.lastPathComponent ?? "command"
        if privileges.runsAsRoot && options.user == nil && !options.quiet {
            FileHandle.standardError.write(Data("bordergate: \(command) runs as root, which can leave its cgroup and the guard; give --user USER (under sudo, exec runs it as the user who ran sudo)\n".utf8))
        }
        let trust = try ExecTrust.prepare(for: ExecTrust.policy(named: options.policy, settings: settings), settings: settings)
        var spawnPrivileges = privileges.spawn
        ExecTrust.apply(trust, to: &spawnPrivileges)
        let childEnvironment = ExecTrust.environment(privileges.environment(from: environment), trust)
        let spawn = { [spawnPrivileges] in
            try await spawnAndWait(options.arguments, in: dir, environment: childEnvironment, privileges: spawnPrivileges)
        }

        if viaDaemon {
            let r = try client.call(ControlRequest(command: .attach, cgroup: cgroupName, policy: options.policy))
            guard r.ok else { throw ServiceError(r.error ?? "the daemon refused to guard \(cgroupName)") }
            defer { _ = try? client.call(ControlRequest(command: .detach, cgroup: cgroupName)) }
            let status = try await spawn()
            stopLeftovers(in: dir, cgroups: cgroups, command: command, quiet: options.quiet)
            if !options.quiet {
                let events = collectFromDaemon(client, cgroup: cgroupName, since: started)
                FileHandle.standardError.write(Data((EventFormatter.summary(events, command: command) + "\n").utf8))
            }
            return Outcome(waitStatus: status)
        }

        // Standalone: our own kernel programs, unpinned, on a proxy port of our own.
        var standalone = settings
        standalone.proxyPort = 0
        let hub = AuditHub(log: try AuditLog(path: settings.auditLogPath))
        let interceptor = try Interceptor(settings: standalone, mode: .ephemeral, cgroups: cgroups, hub: hub, logger: logger)
        let subscription = hub.subscribe(filter: EventFilter(cgroup: cgroupName), capacity: 1 << 20)
        let collector = Task { () -> [AuditEvent] in
            var out: [AuditEvent] = []
            for await item in subscription.items { if case .event(let e, _) = item { out.append(e) } }
            return out
        }
        let status: Int32
        do {
            try await interceptor.start()
            // No daemon keeps the store in bounds: this run does, beside the command.
            let retention = Task.detached { await interceptor.applyRecordingRetentionInBackground() }
            defer { retention.cancel() }
            _ = try interceptor.attach(cgroup: cgroupName, policy: options.policy)
            status = try await spawn()
            stopLeftovers(in: dir, cgroups: cgroups, command: command, quiet: options.quiet)
            // Let the proxy see the tool's sockets close, so every connection has its close event.
            for _ in 0..<100 where interceptor.proxy.counters.values.active > 0 {
                try? await Task.sleep(for: .milliseconds(20))
            }
        } catch {
            await interceptor.stop(failClosed: false)
            hub.shutdown()
            throw error
        }
        await interceptor.stop(failClosed: false)
        hub.shutdown()
        let events = await collector.value
        if !options.quiet {
            FileHandle.standardError.write(Data((EventFormatter.summary(events, command: command) + "\n").utf8))
        }
        return Outcome(waitStatus: status)
    }

    /// Processes the command left running (`cmd &`, a build daemon) would run unguarded once the
    /// guard goes with the command: they end with it instead.
    static func stopLeftovers(in dir: String, cgroups: CgroupV2, command: String, quiet: Bool) {
        let n = cgroups.killAll(dir)
        if n > 0 && !quiet {
            FileHandle.standardError.write(Data("bordergate: stopped \(n) process(es) \(command) left running; they would have run unguarded after it\n".utf8))
        }
    }

    /// Reads the run's events back from the daemon, waiting briefly for close events to land.
    /// The daemon answers with the kernel's verdicts up to the request (it waits for its ring
    /// buffer to be drained), so only the proxy's events can still be on their way.
    static func collectFromDaemon(_ client: ControlClient, cgroup: String, since: Date) -> [AuditEvent] {
        let decoder = AuditEvent.makeDecoder()
        var events: [AuditEvent] = []
        var previous = -1
        for _ in 0..<50 {
            events = []
            try? client.send(ControlRequest(command: .events, follow: false,
                                            filter: EventFilter(since: since.addingTimeInterval(-1), cgroup: cgroup))) { line in
                if let e = try? decoder.decode(AuditEvent.self, from: line) { events.append(e) }
                return true
            }
            // only relayed connections get a close event; refused and direct ones never will
            let connects = Set(events.filter { $0.type == .connect && $0.error == nil && $0.verdict == .redirect }.compactMap(\.connection))
            let closes = Set(events.filter { $0.type == .close }.compactMap(\.connection))
            if connects.isSubset(of: closes) && events.count == previous { break }
            previous = events.count
            usleep(40_000)
        }
        return events
    }

    /// Starts the command in the cgroup, forwards termination signals to it, and waits.
    static func spawnAndWait(_ arguments: [String], in dir: String, environment: [String: String],
                             privileges: ChildProcess.Privileges) async throws -> Int32 {
        // While the child runs, signals meant for it (a terminal's ^C reaches both) must not kill us
        // before we can report; the ones only we receive are passed on.
        let forwarded = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
        forwarded.forEach { signal($0, SIG_IGN) }
        let pid = try ChildProcess.spawn(arguments: arguments, inCgroup: dir, environment: environment, privileges: privileges)
        let sources = forwarded.map { sig -> DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { kill(pid, sig) }
            s.resume()
            return s
        }
        defer { sources.forEach { $0.cancel() } }
        return await withCheckedContinuation { cont in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                cont.resume(returning: status)
            }
        }
    }
}
