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

    /// Who a spawned command runs as and what it may not do (see `bg_spawn_options`).
    public struct Privileges: Sendable, Equatable {
        public struct Identity: Sendable, Equatable {
            public var uid: uid_t
            public var gid: gid_t
            public var groups: [gid_t]
            public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
                self.uid = uid
                self.gid = gid
                self.groups = groups
            }
        }
        /// nil: the caller's own.
        public var identity: Identity?
        public var noNewPrivileges: Bool
        /// Bordergate's seccomp filter: no pidfd_getfd, ptrace attach, process_vm_writev, or
        /// packet/XDP/vsock sockets.
        public var seccomp: Bool
        /// A CA bundle file shown, in the child's own mount namespace, at each of `trustTargets`
        /// (the system's bundle paths): see `bg_spawn_options.trust_bundle`.
        public var trustBundle: String?
        public var trustTargets: [String] = []
        public init(identity: Identity? = nil, noNewPrivileges: Bool = false, seccomp: Bool = false) {
            self.identity = identity
            self.noNewPrivileges = noNewPrivileges
            self.seccomp = seccomp
        }
        /// As the caller, restricted by nothing.
        public static let unchanged = Privileges()
    }

    /// Spawns `arguments` (argv[0] is the command) in the cgroup at `cgroupDirectory`.
    public static func spawn(arguments: [String], inCgroup cgroupDirectory: String,
                             environment: [String: String] = ProcessInfo.processInfo.environment,
                             privileges: Privileges = .unchanged) throws -> pid_t {
        guard let first = arguments.first else { throw KernelError("no command given") }
        guard let path = resolve(first, path: environment["PATH"]) else {
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
        let groups = privileges.identity?.groups ?? []
        let bundle = privileges.trustBundle.map { strdup($0) }
        let targets = privileges.trustTargets.map { UnsafePointer(strdup($0)) }
        defer {
            bundle.map { free($0) }
            targets.forEach { free(UnsafeMutablePointer(mutating: $0)) }
        }
        var failedStep: UnsafePointer<CChar>?
        let pid = argv.withUnsafeBufferPointer { a in
          targets.withUnsafeBufferPointer { t in
            envp.withUnsafeBufferPointer { e in
                groups.withUnsafeBufferPointer { g in
                    var options = bg_spawn_options()
                    options.nofile_soft = originalOpenFileLimit
                    if let id = privileges.identity {
                        options.change_identity = 1
                        options.uid = id.uid
                        options.gid = id.gid
                        options.groups = g.baseAddress
                        options.ngroups = Int32(g.count)
                    }
                    options.no_new_privs = privileges.noNewPrivileges ? 1 : 0
                    options.seccomp = privileges.seccomp ? 1 : 0
                    if let bundle {
                        options.trust_bundle = UnsafePointer(bundle)
                        options.trust_targets = t.baseAddress
                        options.ntrust_targets = Int32(t.count)
                    }
                    return bg_spawn_in_cgroup(cgfd, path, a.baseAddress, e.baseAddress, &options, &failedStep)
                }
            }
          }
        }
        guard pid > 0 else {
            let code = errno
            let step = failedStep.map { String(cString: $0) } ?? "exec"
            if step == "exec" { throw KernelError.system("starting \(path)", errno: code) }
            throw KernelError.system("starting \(path): \(step) in the child failed", errno: code)
        }
        return pid
    }
}
