import BordergateAudit
import Foundation
import Testing

/// Helpers for tests that run the real `bordergate` binary against the real kernel, as root, with
/// test hosts in a network namespace (scripts/testnet.sh). Each fixture uses its own state
/// directory, pin root, control socket and proxy port, so nothing touches the system's.
enum Harness {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The binary `swift test` built next to the test bundle.
    static let binary: String = {
        if let env = ProcessInfo.processInfo.environment["BORDERGATE_BIN"] { return env }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("bordergate").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return packageRoot + "/.build/debug/bordergate"
    }()

    static let netName = "bge2e"
    static let host4 = "198.51.100.10"
    static let host6 = "2001:db8::10"
    static let local4 = "198.51.100.1"

    /// Brings the test network up once per test process.
    static let network: Result<Void, HarnessError> = {
        let r = sh("\(packageRoot)/scripts/testnet.sh up \(netName)")
        guard r.status == 0 else { return .failure(HarnessError("scripts/testnet.sh up failed: \(r.stderr)\(r.stdout)")) }
        atexit { _ = sh("\(Harness.packageRoot)/scripts/testnet.sh down \(Harness.netName)") }
        return .success(())
    }()

    /// Fails the test with the reason if a prerequisite is missing; never skips.
    static func requireEnvironment() throws {
        guard geteuid() == 0 else { throw HarnessError("end-to-end tests load BPF programs and need root: run scripts/test.sh as root") }
        for tool in ["curl", "python3", "ip", "bpftool"] where sh("command -v \(tool)").status != 0 {
            throw HarnessError("\(tool) is missing: run scripts/setup.sh")
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw HarnessError("no bordergate binary at \(binary): run swift build") }
        try network.get()
    }

    static let cgroupRoot: String = {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.contains(" - cgroup2 ") {
            return String(line.split(separator: " ")[4])
        }
        return "/sys/fs/cgroup"
    }()

    struct ShellResult {
        var status: Int32
        var stdout: String
        var stderr: String
        /// The signal that ended the process, if one did.
        var signal: Int32?
    }

    /// Starts a program with stdin from /dev/null and stdout and stderr to files, default signal
    /// handling, and the environment plus `environment`. Foundation's Process is avoided: its
    /// waitUntilExit hung here once a command left a server running in the background.
    static func spawn(_ arguments: [String], environment: [String: String] = [:], stdout: String, stderr: String) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        // Nothing else is inherited: a pipe of the test runner held by a daemon that outlives a
        // test would keep `swift test` waiting for ever.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        // The caller's own Bordergate settings must not reach the tests' daemons and CLIs, and
        // messages the tests match must not be translated. Nor sudo's: `exec` under sudo runs
        // its command as the invoking user, and tests that want that say so.
        var env = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("BORDERGATE_") && !$0.key.hasPrefix("LC_") && !$0.key.hasPrefix("SUDO_")
        }
        env["LC_ALL"] = "C.UTF-8"
        env.merge(environment) { $1 }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envStrings: [String] = env.map { "\($0.key)=\($0.value)" }
        let envp: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, arguments[0], &actions, &attr, argv, envp) == 0 else { return nil }
        return pid
    }

    /// Waits for a child; at the deadline asks it to stop (SIGTERM, so a script can clean up what
    /// it set up) and kills it 10 s later. Returns (exit status or 128+signal, signal).
    static func wait(_ pid: pid_t, timeout: TimeInterval) -> (Int32, Int32?) {
        var status: Int32 = 0
        var deadline = Date().addingTimeInterval(timeout)
        var asked = false
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return (-1, nil) }
            if Date() > deadline && !asked {
                kill(pid, SIGTERM)
                asked = true
                deadline = Date().addingTimeInterval(10)
            } else if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            usleep(5_000)
        }
        let sig = status & 0x7f
        return (sig == 0 ? (status >> 8) & 0xff : 128 + sig, sig == 0 ? nil : sig)
    }

    /// Runs a bash command line and waits for it. Output goes through temporary files, not pipes:
    /// a server the command leaves running in the background must not keep us waiting.
    @discardableResult
    static func sh(_ command: String, environment: [String: String] = [:], timeout: TimeInterval = 120) -> ShellResult {
        let base = NSTemporaryDirectory() + "bge2e-sh-\(getpid())-\(UUID().uuidString)"
        let outPath = base + ".out", errPath = base + ".err"
        defer { unlink(outPath); unlink(errPath) }
        guard let pid = spawn(["/bin/bash", "-c", command], environment: environment, stdout: outPath, stderr: errPath) else {
            return ShellResult(status: -1, stdout: "", stderr: "cannot start bash")
        }
        let (status, sig) = wait(pid, timeout: timeout)
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return ShellResult(status: status, stdout: out, stderr: err, signal: sig)
    }

    /// A fresh cgroup for one test.
    static func makeCgroup(_ name: String) throws -> String {
        let rel = "/bge2e/\(name)-\(getpid())"
        let dir = cgroupRoot + rel
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return rel
    }

    static func removeCgroup(_ rel: String) {
        let dir = cgroupRoot + rel
        // move stragglers out, then remove
        if let procs = try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8) {
            for pid in procs.split(separator: "\n") { kill(Int32(pid) ?? 0, SIGKILL) }
        }
        for _ in 0..<50 where rmdir(dir) != 0 { usleep(20_000) }
    }

    /// A bash command line that runs `command` inside the cgroup `rel`.
    static func inCgroup(_ rel: String, _ command: String) -> String {
        "bash -c 'echo $$ > \(cgroupRoot)\(rel)/cgroup.procs && exec bash -c \"$0\"' \(shellQuote(command))"
    }

    /// Runs a Python script inside the cgroup `rel`.
    static func python(_ script: String, inCgroup rel: String) throws -> ShellResult {
        let path = NSTemporaryDirectory() + "bge2e-\(getpid())-\(UUID().uuidString).py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return sh(inCgroup(rel, "python3 \(path)"))
    }

    /// Python that defines `talk(s)`: sends a byte and its EOF on a connected socket and prints
    /// what came back: `answered`, `closed` or `reset`. A refusal can land before the send, between
    /// it and the shutdown (which then finds the socket no longer connected), or before the read.
    static let pythonTalk = """
        import errno, socket
        def talk(s):
            s.settimeout(10) # a socket taken over after an exec is still non-blocking
            try:
                s.sendall(b"x"); s.shutdown(socket.SHUT_WR)
                print("answered" if s.recv(64) else "closed", flush=True)
            except (ConnectionResetError, BrokenPipeError):
                print("reset", flush=True)
            except OSError as e:
                if e.errno != errno.ENOTCONN: raise
                print("reset", flush=True)

        """

    /// Python under another name, `dir/python3`, in a directory of its own (made afresh, removed
    /// afterwards, and where a test may put its scripts). The kernel names a process by the path it
    /// was exec'd by, so to Bordergate and its policies this is another program.
    static func withRenamedPython(in dir: String, _ body: (_ program: String) throws -> Void) throws {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let program = dir + "/python3"
        try FileManager.default.createSymbolicLink(atPath: program, withDestinationPath: "/usr/bin/python3")
        try body(program)
    }

    static func shellQuote(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func sha256(_ path: String) -> String {
        sh("sha256sum \(path) | cut -d' ' -f1").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}


/// One `bordergate daemon` with its own state, pins, socket and port.
final class DaemonFixture: @unchecked Sendable {
    let name: String
    let stateDir: String
    let pinRoot: String
    let socket: String
    let port: Int
    /// The daemon's pid while it runs.
    private(set) var pid: pid_t?
    let logPath: String

    /// The built-in policy, written out, so a config in /etc on the test machine cannot leak in.
    static let builtInConfig = "policies:\n  default:\n    inspect: all\n    unknown: allow\n"

    /// `files` are written into the state directory first (a config, region tables).
    init(_ name: String, port: Int, config: String = DaemonFixture.builtInConfig, files: [String: String] = [:]) {
        self.name = name
        stateDir = "/tmp/bge2e-\(name)-\(getpid())"
        pinRoot = "/sys/fs/bpf/bge2e_\(name)_\(getpid())"
        socket = "/tmp/bge2e-\(name)-\(getpid()).sock"
        self.port = port
        logPath = stateDir + "/daemon.log"
        try? FileManager.default.removeItem(atPath: stateDir)
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        try? config.write(toFile: stateDir + "/config.yaml", atomically: true, encoding: .utf8)
        for (name, text) in files { try? text.write(toFile: stateDir + "/" + name, atomically: true, encoding: .utf8) }
    }

    var configPath: String { stateDir + "/config.yaml" }

    /// More environment for the daemon and the CLI (test knobs).
    var extraEnvironment: [String: String] = [:]

    var environment: [String: String] {
        ["BORDERGATE_STATE_DIR": stateDir, "BORDERGATE_PIN_ROOT": pinRoot, "BORDERGATE_CONTROL_SOCKET": socket,
         "BORDERGATE_PROXY_PORT": String(port), "BORDERGATE_CONFIG": configPath].merging(extraEnvironment) { $1 }
    }

    /// More environment for the daemon only (NOTIFY_SOCKET, as systemd sets it).
    var daemonEnvironment: [String: String] = [:]

    var auditLog: String { stateDir + "/audit/events.jsonl" }

    /// Starts the daemon and waits until its control socket answers.
    func start() throws {
        guard let pid = Harness.spawn([Harness.binary, "daemon"], environment: environment.merging(daemonEnvironment) { $1 },
                                      stdout: logPath, stderr: logPath) else {
            throw HarnessError("cannot start \(Harness.binary)")
        }
        self.pid = pid
        try? "\(pid)".write(toFile: stateDir + "/daemon.pid", atomically: true, encoding: .utf8)
        for _ in 0..<300 {
            if cli("status").status == 0 { return }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { self.pid = nil; break }
            usleep(50_000)
        }
        throw HarnessError("the daemon did not come up: \(daemonLog)")
    }

    var daemonLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func stop(signal: Int32 = SIGTERM) {
        guard let pid else { return }
        kill(pid, signal)
        _ = Harness.wait(pid, timeout: 30)
        self.pid = nil
    }

    /// Stops the daemon and removes every guard and pin.
    func tearDown() {
        stop()
        cli("detach --all")
        try? FileManager.default.removeItem(atPath: stateDir)
    }

    @discardableResult
    func cli(_ args: String, timeout: TimeInterval = 120) -> Harness.ShellResult {
        Harness.sh("\(Harness.binary) \(args)", environment: environment, timeout: timeout)
    }

    /// The events in the audit log.
    func events() -> [AuditEvent] {
        var out: [AuditEvent] = []
        _ = try? AuditLog.read(path: auditLog) { e, _ in out.append(e) }
        return out
    }

    /// Waits until `predicate` holds for the events, returning them either way.
    func waitForEvents(timeout: TimeInterval = 10, _ predicate: ([AuditEvent]) -> Bool) -> [AuditEvent] {
        let deadline = Date().addingTimeInterval(timeout)
        var e = events()
        while !predicate(e) && Date() < deadline {
            usleep(50_000)
            e = events()
        }
        return e
    }
}

extension Array where Element == AuditEvent {
    func connects(pid: Int? = nil, comm: String? = nil) -> [AuditEvent] {
        filter { $0.type == .connect && (pid == nil || $0.process?.pid == pid) && (comm == nil || $0.process?.comm == comm) }
    }

    func close(of connect: AuditEvent) -> AuditEvent? {
        first { $0.type == .close && $0.connection == connect.connection }
    }
}
