import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// Python that connects to the test host once a step, up to `tries` times, and prints
    /// `ok` or `refused` per attempt, stopping at the first `want`.
    static func connectUntil(_ want: String, tries: Int, pause: Double) -> String {
        """
        import socket, time
        for i in range(\(tries)):
            try:
                socket.create_connection(("\(Harness.host4)", 80), timeout=5).close()
                got = "ok"
            except PermissionError:
                got = "refused"
            print(got, flush=True)
            if got == "\(want)":
                break
            time.sleep(\(pause))
        """
    }

    /// The state directory on a 4 MiB tmpfs: once it is full, guarded connections are refused
    /// (fail closed), status and stderr say why, and once space is freed they go through again
    /// with the outage recorded in a log that still verifies.
    @Test func aFullStateDirectoryRefusesGuardedConnectionsUntilTheLogCanBeWritten() throws {
        try Harness.requireEnvironment()
        let d = DaemonFixture("diskfull", port: 17_422)
        #expect(Harness.sh("mount -t tmpfs -o size=4M bge2e-diskfull \(d.stateDir)").status == 0)
        defer {
            d.tearDown()
            Harness.sh("umount \(d.stateDir); rmdir \(d.stateDir)")
        }
        try DaemonFixture.builtInConfig.write(toFile: d.configPath, atomically: true, encoding: .utf8)
        try d.start()
        let cg = try Harness.makeCgroup("diskfull")
        defer { Harness.removeCgroup(cg) }
        #expect(d.cli("attach \(cg)").status == 0)
        #expect(try connections(3, in: cg).stdout.contains("done"))
        let before = d.waitForEvents { $0.connects().count >= 3 }.connects()
        #expect(before.count >= 3)

        // fill it: the next events cannot be written
        Harness.sh("dd if=/dev/zero of=\(d.stateDir)/fill bs=4k 2>/dev/null; sync")
        let blocked = try Harness.python(Self.connectUntil("refused", tries: 300, pause: 0.02), inCgroup: cg).stdout
        #expect(blocked.hasSuffix("refused\n"), "a guarded connect is refused once the log cannot be written: \(blocked)")
        let status = d.cli("status")
        #expect(status.stdout.contains("AUDIT LOG   cannot write since"), "\(status.stdout)")
        #expect(status.stdout.contains("No space left on device"), "\(status.stdout)")
        #expect(d.daemonLog.contains("refusing every guarded connection until the audit log can be written; free space in \(d.stateDir)/audit"),
                "\(d.daemonLog)")
        // still refused a moment later: the block holds while nothing can be written
        let still = try Harness.python(Self.connectUntil("ok", tries: 1, pause: 0), inCgroup: cg).stdout
        #expect(still == "refused\n", "\(still)")

        // free it: the writer retries on its own, and connections go through again
        unlink(d.stateDir + "/fill")
        let again = try Harness.python(Self.connectUntil("ok", tries: 50, pause: 0.1), inCgroup: cg).stdout
        #expect(again.hasSuffix("ok\n"), "connections go through once the log can be written: \(again)")
        #expect(d.cli("status").stdout.contains("AUDIT LOG") == false)
        #expect(d.daemonLog.contains("can be written again"), "\(d.daemonLog)")
        d.stop()

        let events = d.events()
        // nothing acknowledged before the outage is lost, and the outage itself is on record
        for e in before { #expect(events.contains { $0.id == e.id }, "\(e.id) survived") }
        #expect(events.contains { $0.type == .daemon && ($0.message ?? "").contains("could not be written from") },
                "the outage is a chained event")
        let verify = d.cli("audit verify")
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }
}
