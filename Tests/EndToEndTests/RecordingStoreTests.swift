import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// The daemon and a standalone exec open the session store in their state directory (root
    /// only), and `bordergate sessions` reads it while the daemon runs. No handler records yet:
    /// the store is empty, and that is said rather than printed as an empty table.
    @Test func theDaemonAndExecOpenTheSessionStore() throws {
        let env = standaloneEnvironment("recstore")
        let dir = env["BORDERGATE_STATE_DIR"]!
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Harness.requireEnvironment()
        let r = Harness.sh("\(Harness.binary) exec --quiet -- true", environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(stat(dir + "/recordings/sessions.sqlite", &st) == 0 && st.st_mode & 0o777 == 0o600, "exec made the store")
        let list = Harness.sh("\(Harness.binary) sessions list", environment: env)
        #expect(list.status == 0 && list.stdout == "no recorded sessions match\n", "\(list.stdout)\(list.stderr)")

        try withOwnDaemon("recording", port: 17_437) { d, _ in
            #expect(d.daemonLog.contains("recordings      \(d.stateDir)/recordings/sessions.sqlite"), "\(d.daemonLog)")
            let status = d.cli("status")
            #expect(status.stdout.contains("recordings  \(d.stateDir)/recordings/sessions.sqlite: ") && status.stdout.contains("retain 30d"),
                    "\(status.stdout)")
            // a reload applies the config's recording: settings
            let config = try String(contentsOfFile: d.configPath, encoding: .utf8)
            try (config + "recording:\n  retain: 12h\n  max-size: 500MiB\n  max-session-body: 1MiB\n")
                .write(toFile: d.configPath, atomically: true, encoding: .utf8)
            let reload = d.cli("reload")
            #expect(reload.status == 0, "\(reload.stderr)")
            let reloaded = d.cli("status").stdout
            #expect(reloaded.contains("retain 12h or 500.0 MiB, 1.0 MiB of bodies per session"), "\(reloaded)")
            let list = d.cli("sessions list -o json")
            #expect(list.status == 0 && list.stdout.isEmpty, "read while the daemon writes: \(list.stderr)")
            let unknown = d.cli("sessions show 0000-nope")
            #expect(unknown.status == 1)
            #expect(unknown.stderr.hasPrefix("bordergate: ") && unknown.stderr.contains("no recorded session 0000-nope"))
            #expect(unknown.stderr.split(separator: "\n").count == 1, "one line: \(unknown.stderr)")
        }
    }
}
