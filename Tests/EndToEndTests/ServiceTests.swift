import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// Started as systemd starts a Type=notify unit, the daemon says READY=1 once it serves, and
    /// STOPPING=1 when it stops; SIGHUP (the unit's ExecReload) reloads it.
    @Test func theDaemonTellsSystemdWhenItIsReadyAndWhenItStopsAndReloadsOnSIGHUP() throws {
        try Harness.requireEnvironment()
        let d = DaemonFixture("notify", port: 17_424)
        defer { d.tearDown() }
        let sock = d.stateDir + "/notify.sock"
        let got = d.stateDir + "/notify.txt"
        let listener = Harness.spawn(["/usr/bin/python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(sys.argv[1])
            out = open(sys.argv[2], "a")
            while True:
                out.write(s.recv(4096).decode() + "\\n---\\n"); out.flush()
            """, sock, got], stdout: "/dev/null", stderr: d.stateDir + "/notify.err")
        defer { if let listener { kill(listener, SIGKILL); _ = Harness.wait(listener, timeout: 5) } }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: sock) { usleep(20_000) }
        d.daemonEnvironment = ["NOTIFY_SOCKET": sock]
        try d.start()
        var text = ""
        for _ in 0..<100 {
            text = (try? String(contentsOfFile: got, encoding: .utf8)) ?? ""
            if text.contains("READY=1") { break }
            usleep(50_000)
        }
        #expect(text.contains("READY=1\nSTATUS=guarding"), "\(text)")
        // systemctl reload: the unit sends SIGHUP
        if let pid = d.pid { kill(pid, SIGHUP) }
        let reloaded = d.waitForEvents { $0.contains { $0.type == .policy && ($0.message ?? "").contains("(SIGHUP)") } }
        #expect(reloaded.contains { $0.type == .policy && ($0.message ?? "").hasPrefix("reloaded ") }, "a SIGHUP reloads")
        d.stop()
        text = (try? String(contentsOfFile: got, encoding: .utf8)) ?? ""
        #expect(text.contains("STOPPING=1"), "\(text)")
    }
}
