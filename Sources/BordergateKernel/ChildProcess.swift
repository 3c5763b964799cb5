import CBordergateSys
import Foundation

/// Runs a command inside a cgroup from its first instruction.
public enum ChildProcess {
    /// Resolves `command` like a shell does: as given if it has a slash, else through `PATH`.
    public static func resolve(_ command: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if command.contains("/") {
            return access(command, X_OK) == 0 ? command : nil
        }
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(command)"
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// The soft open-file limit this process started with, before the proxy raised it: what a
    /// spawned command gets, as it would without Bordergate.
    public static let originalOpenFileLimit: UInt = {
        var lim = rlimit()
        return getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 ? UInt(lim.rlim_cur) : 0
    }()

    /// Spawns `arguments` (argv[0] is the command) in the cgroup at `cgroupDirectory`.
    public static func spawn(arguments: [String], inCgroup cgroupDirectory: String,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> pid_t {
        guard let first = arguments.first else { throw KernelError("no command given") }
        guard let path = resolve(first) else {
            throw KernelError("\(first): command not found (searched PATH)")
        }
        let cgfd = open(cgroupDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard cgfd >= 0 else { throw KernelError.system("opening cgroup \(cgroupDirectory)", errno: errno) }
        defer { close(cgfd) }

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = argv.withUnsafeBufferPointer { a in
            envp.withUnsafeBufferPointer { e in
                bg_spawn_in_cgroup(cgfd, path, a.baseAddress, e.baseAddress, originalOpenFileLimit)
            }
        }
        guard pid > 0 else {
            throw KernelError.system("starting \(path)", errno: errno)
        }
        return pid
    }
}
