import BordergateKernel
import Foundation

/// Who `bordergate exec` runs its command as, decided like `sudo -u`: root inside a guarded cgroup
/// can leave it (one write to another cgroup's `cgroup.procs`), detach the programs or set the
/// proxy's mark, so a command run through sudo runs as the user who ran sudo unless `--user root`
/// says otherwise.
public struct ExecPrivileges: Sendable, Equatable {
    /// The user the command runs as, as a password entry names it.
    public struct Account: Sendable, Equatable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t
        public var home: String
        public init(name: String, uid: uid_t, gid: gid_t, home: String) {
            self.name = name
            self.uid = uid
            self.gid = gid
            self.home = home
        }
    }

    /// nil: the command runs as the caller (no `--user`, not under sudo).
    public var account: Account?
    public var spawn: ChildProcess.Privileges
    /// Set when the command will run as root, for the caller to warn about.
    public var runsAsRoot: Bool

    /// The user database, replaceable in tests.
    public struct Lookup: Sendable {
        public var user: @Sendable (String) -> Account?
        public var uid: @Sendable (uid_t) -> Account?
        public var group: @Sendable (String) -> gid_t?
        public var groups: @Sendable (_ user: String, _ gid: gid_t) -> [gid_t]
        public init(user: @escaping @Sendable (String) -> Account?, uid: @escaping @Sendable (uid_t) -> Account?,
                    group: @escaping @Sendable (String) -> gid_t?, groups: @escaping @Sendable (String, gid_t) -> [gid_t]) {
            self.user = user
            self.uid = uid
            self.group = group
            self.groups = groups
        }
    }

    /// Decides from `--user USER[:GROUP]` (`user`), sudo's variables in `environment` and the
    /// caller's effective uid. `allowSetuid` leaves no_new_privs off, so setuid binaries (sudo, su,
    /// ping on some systems) keep working, and can raise the command's privileges.
    public static func resolve(user: String?, allowSetuid: Bool, environment: [String: String], euid: uid_t,
                               lookup: Lookup = .system) throws -> ExecPrivileges {
        var target: (account: Account, gid: gid_t)?
        if let user {
            let parts = user.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let name = parts.first, !name.isEmpty else {
                throw ServiceError("--user '\(user)': no user named; use --user USER[:GROUP], e.g. --user build:build")
            }
            guard let account = lookup.user(name) ?? UInt32(name).flatMap({ lookup.uid($0) })
                    ?? UInt32(name).map({ Account(name: name, uid: $0, gid: $0, home: "/") }) else {
                throw ServiceError("--user '\(user)': no user '\(name)' in the password database; name an existing user or a numeric uid")
            }
            var gid = account.gid
            if parts.count == 2 {
                guard !parts[1].isEmpty, let g = lookup.group(parts[1]) ?? gid_t(parts[1]) else {
                    throw ServiceError("--user '\(user)': no group '\(parts[1])'; name an existing group or a numeric gid")
                }
                gid = g
            }
            target = (account, gid)
        } else if euid == 0, let sudoUID = environment["SUDO_UID"].flatMap({ uid_t($0) }), sudoUID != 0 {
            // Under sudo: the user who ran it, with the primary group sudo recorded.
            let gid = environment["SUDO_GID"].flatMap { gid_t($0) }
            let account = environment["SUDO_USER"].flatMap { lookup.user($0) }.flatMap { $0.uid == sudoUID ? $0 : nil }
                ?? lookup.uid(sudoUID)
                ?? Account(name: environment["SUDO_USER"] ?? String(sudoUID), uid: sudoUID, gid: gid ?? sudoUID, home: "/")
            target = (account, gid ?? account.gid)
        }

        guard let target else {
            // As the caller: a non-root caller has no privilege to drop; root is warned about.
            return ExecPrivileges(account: nil,
                                  spawn: .init(identity: nil, noNewPrivileges: euid != 0 && !allowSetuid, seccomp: true),
                                  runsAsRoot: euid == 0)
        }
        if target.account.uid != euid && euid != 0 {
            throw ServiceError("--user \(target.account.name): only root can run a command as another user; run bordergate exec with sudo")
        }
        let groups = target.account.uid == 0 && target.gid == 0 ? [0] : lookup.groups(target.account.name, target.gid)
        let isRoot = target.account.uid == 0
        return ExecPrivileges(
            account: target.account,
            spawn: .init(identity: .init(uid: target.account.uid, gid: target.gid, groups: groups.isEmpty ? [target.gid] : groups),
                         noNewPrivileges: !isRoot && !allowSetuid, seccomp: true),
            runsAsRoot: isRoot)
    }

    /// The command's environment: the caller's, with `HOME`, `USER` and `LOGNAME` of the account
    /// it runs as (as `sudo -u` sets them).
    public func environment(from base: [String: String]) -> [String: String] {
        guard let account else { return base }
        var env = base
        env["HOME"] = account.home
        env["USER"] = account.name
        env["LOGNAME"] = account.name
        return env
    }
}

extension ExecPrivileges.Lookup {
    /// The system's password and group databases.
    public static let system = ExecPrivileges.Lookup(
        user: { name in
            var pwd = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buf = [CChar](repeating: 0, count: 16384)
            guard getpwnam_r(name, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
            return ExecPrivileges.Account(pwd)
        },
        uid: { uid in
            var pwd = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buf = [CChar](repeating: 0, count: 16384)
            guard getpwuid_r(uid, &pwd, &buf, buf.count, &result) == 0, result != nil else { return nil }
            return ExecPrivileges.Account(pwd)
        },
        group: { name in
            var grp = Glibc.group()
            var result: UnsafeMutablePointer<Glibc.group>?
            var buf = [CChar](repeating: 0, count: 16384)
            guard getgrnam_r(name, &grp, &buf, buf.count, &result) == 0, result != nil else { return nil }
            return grp.gr_gid
        },
        groups: { user, gid in
            var count: Int32 = 64
            var list = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(user, gid, &list, &count) < 0 {
                list = [gid_t](repeating: 0, count: Int(count))
                guard getgrouplist(user, gid, &list, &count) >= 0 else { return [gid] }
            }
            return Array(list.prefix(Int(count)))
        })
}

extension ExecPrivileges.Account {
    init(_ pwd: passwd) {
        self.init(name: String(cString: pwd.pw_name), uid: pwd.pw_uid, gid: pwd.pw_gid,
                  home: pwd.pw_dir.map { String(cString: $0) } ?? "/")
    }
}
