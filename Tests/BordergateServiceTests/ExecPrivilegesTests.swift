import BordergateService
import Foundation
import BordergateKernel
import Testing

@Suite struct ExecPrivilegesTests {
    typealias Account = ExecPrivileges.Account
    let lookup = ExecPrivileges.Lookup(
        user: { ["alice": Account(name: "alice", uid: 1000, gid: 1000, home: "/home/alice"),
                 "root": Account(name: "root", uid: 0, gid: 0, home: "/root")][$0] },
        uid: { [1000: Account(name: "alice", uid: 1000, gid: 1000, home: "/home/alice"),
                0: Account(name: "root", uid: 0, gid: 0, home: "/root")][$0] },
        group: { ["docker": 998, "alice": 1000][$0] },
        groups: { user, gid in user == "alice" ? [gid, 998, 27] : [gid] })

    @Test func underSudoTheCommandRunsAsTheInvokingUser() throws {
        let p = try ExecPrivileges.resolve(user: nil, allowSetuid: false,
                                           environment: ["SUDO_UID": "1000", "SUDO_GID": "1000", "SUDO_USER": "alice"],
                                           euid: 0, lookup: lookup)
        #expect(p.spawn.identity == .init(uid: 1000, gid: 1000, groups: [1000, 998, 27]))
        #expect(p.spawn.noNewPrivileges && p.spawn.seccomp)
        #expect(!p.runsAsRoot)
        let env = p.environment(from: ["HOME": "/root", "USER": "root", "PATH": "/usr/bin"])
        #expect(env == ["HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "PATH": "/usr/bin"])
    }

    @Test func userRootKeepsRootAndAllowSetuidKeepsNoNewPrivsOff() throws {
        let root = try ExecPrivileges.resolve(user: "root", allowSetuid: false, environment: ["SUDO_UID": "1000"], euid: 0, lookup: lookup)
        #expect(root.spawn.identity?.uid == 0 && root.runsAsRoot)
        #expect(!root.spawn.noNewPrivileges, "root keeps what setuid would give it anyway")
        #expect(root.spawn.seccomp)
        let setuid = try ExecPrivileges.resolve(user: "alice:docker", allowSetuid: true, environment: [:], euid: 0, lookup: lookup)
        #expect(setuid.spawn.identity == .init(uid: 1000, gid: 998, groups: [998, 998, 27]))
        #expect(!setuid.spawn.noNewPrivileges)
        let numeric = try ExecPrivileges.resolve(user: "4242:4243", allowSetuid: false, environment: [:], euid: 0, lookup: lookup)
        #expect(numeric.spawn.identity?.uid == 4242 && numeric.spawn.identity?.gid == 4243)
    }

    @Test func withoutSudoOrUserTheCallerStaysAndRootIsFlagged() throws {
        let p = try ExecPrivileges.resolve(user: nil, allowSetuid: false, environment: [:], euid: 0, lookup: lookup)
        #expect(p.account == nil && p.spawn.identity == nil && p.runsAsRoot)
        // sudo -u root: SUDO_UID 0 is root running sudo as root
        let sudoRoot = try ExecPrivileges.resolve(user: nil, allowSetuid: false, environment: ["SUDO_UID": "0"], euid: 0, lookup: lookup)
        #expect(sudoRoot.spawn.identity == nil && sudoRoot.runsAsRoot)
    }

    @Test func badUsersAreOneClearLine() {
        #expect(throws: (any Error).self) { try ExecPrivileges.resolve(user: "nobody-here", allowSetuid: false, environment: [:], euid: 0, lookup: lookup) }
        #expect(throws: (any Error).self) { try ExecPrivileges.resolve(user: "alice:no-group", allowSetuid: false, environment: [:], euid: 0, lookup: lookup) }
        #expect(throws: (any Error).self) { try ExecPrivileges.resolve(user: ":docker", allowSetuid: false, environment: [:], euid: 0, lookup: lookup) }
        do {
            _ = try ExecPrivileges.resolve(user: "alice", allowSetuid: false, environment: [:], euid: 1001, lookup: lookup)
            Issue.record("a non-root caller cannot switch users")
        } catch {
            #expect("\(error)".contains("only root can run a command as another user"), "\(error)")
        }
    }
}
