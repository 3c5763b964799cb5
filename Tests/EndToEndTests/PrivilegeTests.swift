import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// What a command under `bordergate exec` may do: under sudo it runs as the user who ran sudo,
    /// with no capabilities, no_new_privs and the seccomp filter, so it cannot leave its cgroup,
    /// take another process's socket or open a packet socket (finding 6 and part of 5 of the
    /// hardening review).
    @Test func execUnderSudoRunsAsTheInvokingUserWithoutPrivileges() throws {
        try Harness.requireEnvironment()
        var env = standaloneEnvironment("priv")
        defer { try? FileManager.default.removeItem(atPath: env["BORDERGATE_STATE_DIR"]!) }
        env["SUDO_UID"] = "65534"
        env["SUDO_GID"] = "65534"
        env["SUDO_USER"] = "nobody"
        let probe = """
            import ctypes, errno, os, socket
            libc = ctypes.CDLL(None, use_errno=True)
            print("pidfd_getfd", errno.errorcode.get(ctypes.get_errno(), "ok") if libc.syscall(438, -1, 0, 0) < 0 else "ok")
            try:
                open("\(Harness.cgroupRoot)/cgroup.procs", "w").write(str(os.getpid()))
                print("escape", "done")
            except OSError as e:
                print("escape", errno.errorcode[e.errno])
            print("cgroup", open("/proc/self/cgroup").read().strip().split(":")[-1])
            for line in open("/proc/self/status"):
                if line.startswith(("CapEff", "CapPrm", "CapAmb", "NoNewPrivs", "Seccomp:")):
                    print(line.split(":")[0], line.split()[1])
            print("uid", os.getuid(), os.geteuid(), "gid", os.getgid(), "home", os.environ.get("HOME"))
            """
        let script = env["BORDERGATE_STATE_DIR"]! + "/probe.py"
        try probe.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(env["BORDERGATE_STATE_DIR"]!, 0o755)
        chmod(script, 0o644)
        let r = Harness.sh("\(Harness.binary) exec -- sh -c 'python3 \(script); curl -sS --max-time 10 -o /dev/null -w \"curl %{http_code}\\n\" http://\(Harness.host4)/peer'",
                           environment: env)
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let lines = Set(r.stdout.split(separator: "\n").map(String.init))
        #expect(lines.contains("uid 65534 65534 gid 65534 home /nonexistent"), "\(r.stdout)")
        #expect(lines.contains("CapEff 0000000000000000") && lines.contains("CapPrm 0000000000000000")
                && lines.contains("CapAmb 0000000000000000"), "no capabilities: \(r.stdout)")
        #expect(lines.contains("NoNewPrivs 1"), "\(r.stdout)")
        #expect(lines.contains("Seccomp 2"), "\(r.stdout)")
        #expect(lines.contains("pidfd_getfd EPERM"), "refused by the filter, not EBADF: \(r.stdout)")
        #expect(lines.contains("escape EACCES"), "a non-root command cannot move itself out: \(r.stdout)")
        #expect(lines.contains { $0.hasPrefix("cgroup /bordergate/exec-") }, "\(r.stdout)")
        #expect(lines.contains("curl 200"), "the guarded command still works: \(r.stdout) \(r.stderr)")
        #expect(!r.stderr.contains("runs as root"), "\(r.stderr)")
        var events: [AuditEvent] = []
        _ = try AuditLog.read(path: env["BORDERGATE_STATE_DIR"]! + "/audit/events.jsonl") { e, _ in events.append(e) }
        let connect = try #require(events.connects(comm: "curl").first)
        #expect(connect.process?.uid == 65534 && connect.process?.user == "nobody", "\(String(describing: connect.process))")

        // --user root keeps root, still under the filter: no packet sockets
        let root = Harness.sh("""
            \(Harness.binary) exec --quiet --user root -- python3 -c '
            import os, socket
            try:
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print("packet opened")
            except OSError as e:
                print("packet", e.errno)
            print("uid", os.getuid())'
            """, environment: env)
        #expect(root.stdout.contains("uid 0"), "\(root.stdout) \(root.stderr)")
        #expect(root.stdout.contains("packet 1"), "AF_PACKET refused with EPERM: \(root.stdout) \(root.stderr)")

        // --user USER:GROUP, and what cannot be
        let group = Harness.sh("\(Harness.binary) exec --quiet --user nobody:nogroup -- id -u -n", environment: env)
        #expect(group.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "nobody", "\(group.stdout) \(group.stderr)")
        let unknown = Harness.sh("\(Harness.binary) exec --user no-such-user-bg -- true", environment: env)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("no user 'no-such-user-bg'"), "\(unknown.stderr)")
        // plain root without sudo or --user: it runs, and says what that means
        env["SUDO_UID"] = nil
        let plain = Harness.sh("\(Harness.binary) exec -- id -u", environment: env)
        #expect(plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        #expect(plain.stderr.contains("runs as root, which can leave its cgroup"), "\(plain.stderr)")
    }
}
