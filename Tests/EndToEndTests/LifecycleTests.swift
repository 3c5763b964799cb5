import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// A fixture with no daemon, for `exec` standalone and the error paths. It has a config of
    /// its own, so a policy in the host's /etc/bordergate/config.yaml does not decide its tests.
    func standaloneEnvironment(_ name: String) -> [String: String] {
        let dir = "/tmp/bge2e-\(name)-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? DaemonFixture.builtInConfig.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        return ["BORDERGATE_STATE_DIR": dir, "BORDERGATE_CONFIG": dir + "/config.yaml",
                "BORDERGATE_CONTROL_SOCKET": "/tmp/bge2e-\(name)-\(getpid()).sock",
                "BORDERGATE_PIN_ROOT": "/sys/fs/bpf/bge2e_\(name)_\(getpid())"]
    }

    /// A daemon of its own (it will be stopped or killed) guarding a fresh cgroup; both are
    /// removed afterwards.
    func withOwnDaemon(_ name: String, port: Int, config: String = DaemonFixture.builtInConfig,
                       _ body: (DaemonFixture, String) throws -> Void) throws {
        try Harness.requireEnvironment()
        let d = DaemonFixture(name, port: port, config: config)
        defer { d.tearDown() }
        try d.start()
        let cg = try Harness.makeCgroup(name)
        defer { Harness.removeCgroup(cg) }
        #expect(d.cli("attach \(cg)").status == 0)
        try body(d, cg)
    }

    @Test func execStandaloneRunsTheToolUnderGuardAndSummarizes() throws {
        try Harness.requireEnvironment()
        let env = standaloneEnvironment("exec")
        defer { try? FileManager.default.removeItem(atPath: env["BORDERGATE_STATE_DIR"]!) }
        let r = Harness.sh("\(Harness.binary) exec -- curl -sS http://\(Harness.host4)/peer", environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(Harness.local4), "the tool's output is the terminal's: \(r.stdout)")
        #expect(r.stderr.contains("curl made 1 connection"), "\(r.stderr)")
        #expect(r.stderr.contains("→ \(Harness.host4):80"), "\(r.stderr)")
        // recorded durably
        var events: [AuditEvent] = []
        _ = try AuditLog.read(path: env["BORDERGATE_STATE_DIR"]! + "/audit/events.jsonl") { e, _ in events.append(e) }
        let connect = try #require(events.connects(comm: "curl").first)
        #expect(connect.process?.exe == "/usr/bin/curl")
        #expect(connect.process?.cgroup.hasPrefix("/bordergate/exec-") == true)
        #expect(events.close(of: connect) != nil)
        // and nothing is left behind: no pins, no cgroup
        #expect(!FileManager.default.fileExists(atPath: env["BORDERGATE_PIN_ROOT"]!))
        let cgroup = try #require(connect.process?.cgroup)
        #expect(!FileManager.default.fileExists(atPath: Harness.cgroupRoot + cgroup), "\(cgroup) was left behind")
    }

    @Test func execPassesExitStatusSignalsAndQuiet() throws {
        try Harness.requireEnvironment()
        let env = standaloneEnvironment("status")
        defer { try? FileManager.default.removeItem(atPath: env["BORDERGATE_STATE_DIR"]!) }
        let seven = Harness.sh("\(Harness.binary) exec --quiet -- sh -c 'exit 7'", environment: env)
        #expect(seven.status == 7)
        #expect(seven.stderr.isEmpty, "--quiet prints no summary: \(seven.stderr)")
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: Harness.cgroupRoot + "/bordergate")) ?? [])
        let killed = Harness.sh("\(Harness.binary) exec -- sh -c 'kill -TERM $$'", environment: env)
        #expect(killed.signal == SIGTERM, "bordergate dies of the child's signal: status \(killed.status)")
        #expect(killed.stderr.contains("made 0 connections"), "the summary still comes: \(killed.stderr)")
        let after = Set((try? FileManager.default.contentsOfDirectory(atPath: Harness.cgroupRoot + "/bordergate")) ?? [])
        #expect(after.subtracting(before).isEmpty, "dying of the signal leaves no cgroup behind")
        // the command gets the user's open-file limit, not the one the proxy raised for itself
        let limit = Harness.sh("ulimit -Sn 1024; \(Harness.binary) exec --quiet -- sh -c 'ulimit -Sn'", environment: env)
        #expect(limit.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1024", "\(limit.stdout) \(limit.stderr)")
        // what the command leaves behind does not outlive the guard
        let started = Date()
        let leftover = Harness.sh("\(Harness.binary) exec -- sh -c 'sleep 60 & echo $!'", environment: env)
        #expect(Date().timeIntervalSince(started) < 20, "exec returns with its command")
        let sleeper = try #require(Int32(leftover.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        let state = (try? String(contentsOfFile: "/proc/\(sleeper)/stat", encoding: .utf8))?
            .split(separator: ")").last?.split(separator: " ").first.map(String.init)
        #expect(state == nil || state == "Z", "the background sleep was stopped with the command (state \(state ?? "gone"))")
        #expect(leftover.stderr.contains("stopped 1 process(es)"), "\(leftover.stderr)")
        let missing = Harness.sh("\(Harness.binary) exec -- no-such-tool-xyz", environment: env)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no-such-tool-xyz: command not found"), "\(missing.stderr)")
    }

    @Test func execUsesTheDaemonWhenOneRuns() throws {
        let d = try Self.shared.get()
        let r = d.cli("exec -- curl -sS -o /dev/null http://\(Harness.host4)/")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("curl made 1 connection"), "\(r.stderr)")
        let events = d.waitForEvents { !$0.connects(comm: "curl").filter { $0.process?.cgroup.hasPrefix("/bordergate/exec-") == true }.isEmpty }
        let viaDaemon = events.connects(comm: "curl").filter { e in e.process?.cgroup.hasPrefix("/bordergate/exec-") == true }
        #expect(!viaDaemon.isEmpty, "the daemon recorded the exec's connection")
    }

    @Test func aKilledDaemonFailsClosedAndARestartedOneResumesFromThePins() throws {
        try withOwnDaemon("failclosed", port: 17_403) { d, cg in
            let curl = "curl -sS -m 5 -o /dev/null -w '%{http_code}' http://\(Harness.host4)/"
            #expect(Harness.sh(Harness.inCgroup(cg, curl)).stdout == "200")

            d.stop(signal: SIGKILL)
            let refused = Harness.sh(Harness.inCgroup(cg, curl))
            #expect(refused.status != 0, "with the daemon dead, a guarded connect must not get through")
            #expect(refused.stdout != "200")
            // the guard is still there and says so
            let status = d.cli("status")
            #expect(status.status != 0 && status.stderr.contains("still guarded"), "\(status.stderr)")

            try d.start() // same pins, no re-attach
            #expect(d.cli("status").stdout.contains(cg), "the restarted daemon resumed the guard")
            #expect(Harness.sh(Harness.inCgroup(cg, curl)).stdout == "200")
            // the attempt made while no daemon listened is on record
            let events = d.waitForEvents(timeout: 15) { $0.contains { $0.process?.cgroup == cg && $0.error?.contains("never reached the proxy") == true } }
            // reported by the kernel as the socket went, once: not again by the proxy or a second sighting
            #expect(events.filter { $0.process?.cgroup == cg && $0.error?.contains("never reached the proxy") == true }.count == 1)
        }
    }

    @Test func aRefusedRedirectReportedAfterAnExecIsNotNamedByTheNewProgram() throws {
        // The kernel reports a redirect that never reached the proxy when its socket goes, and the
        // socket may outlive the program that connected it (inherited across an exec).
        try withOwnDaemon("release-exec", port: 17_407) { d, cg in
            let dir = "/tmp/bge2e-release-exec-program-\(getpid())" // not the daemon's state directory
            try Harness.withRenamedPython(in: dir) { other in
                d.stop(signal: SIGKILL) // nothing listens: the connect is refused, the guard stays
                let script = "\(dir)/connect.py"
                try """
                    import os, socket
                    s = socket.socket()
                    try:
                        s.connect(('\(Harness.host4)', 80))
                    except OSError as e:
                        print(type(e).__name__, flush=True)
                    os.set_inheritable(s.fileno(), True)
                    os.execv('\(other)', ['python3', '-c', 'import os, sys; os.close(int(sys.argv[1]))', str(s.fileno())])
                    """.write(toFile: script, atomically: true, encoding: .utf8)
                let r = Harness.sh(Harness.inCgroup(cg, "exec /usr/bin/python3 \(script)"))
                #expect(r.status == 0 && r.stdout.contains("ConnectionRefusedError"), "\(r.stdout) \(r.stderr)")
                try d.start() // reads what the kernel reported meanwhile
                let events = d.waitForEvents(timeout: 15) { all in
                    all.contains { $0.process?.cgroup == cg && $0.error?.contains("never reached the proxy") == true }
                }
                let e = try #require(events.first { $0.process?.cgroup == cg && $0.error?.contains("never reached the proxy") == true })
                #expect(e.process?.comm == "python3")
                #expect(e.process?.exe == nil, "named by the program exec'd after the connect: \(e.process?.exe ?? "")")
            }
        }
    }

    @Test func connectionsADeadDaemonNeverAcceptedAreReportedOnceByTheNext() throws {
        try withOwnDaemon("backlog", port: 17_406) { d, cg in
            // A stopped daemon accepts nothing, but the kernel completes handshakes into its backlog:
            // these connections reach the proxy's listener and are never accepted.
            let pid = try #require(d.pid)
            kill(pid, SIGSTOP)
            let script = """
            import socket
            socks = [socket.create_connection(('\(Harness.host4)', 80), timeout=5) for _ in range(3)]
            print(len(socks))
            """
            let r = try Harness.python(script, inCgroup: cg)
            d.stop(signal: SIGKILL)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3", "\(r.stdout) \(r.stderr)")
            try d.start() // same pins: it finds the three records nobody claimed
            let events = d.waitForEvents(timeout: 15) { all in
                all.filter { $0.process?.cgroup == cg && $0.error?.contains("never reached the proxy") == true }.count >= 3
            }
            let reported = events.filter { $0.process?.cgroup == cg && $0.type == .connect }
            #expect(reported.count == 3, "\(reported.map { $0.error ?? $0.verdict?.rawValue ?? "" })")
            #expect(reported.allSatisfy { $0.verdict == .redirect && $0.destination?.ip == Harness.host4 && $0.process?.comm == "python3" })
            #expect(reported.allSatisfy { $0.error?.contains("never reached the proxy") == true })
            let left = Harness.sh("bpftool -j map dump pinned \(d.pinRoot)/maps/orig_by_tuple").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(left == "[]", "the records were taken, not left for the next start: \(left.prefix(120))")
        }
    }

    @Test func aRestartRepairsAGuardMissingAHookAndDropsOnlyRemovedCgroups() throws {
        try Harness.requireEnvironment()
        let d = DaemonFixture("repair", port: 17_405)
        defer { d.tearDown() }
        try d.start()
        let kept = try Harness.makeCgroup("repair")
        let removed = try Harness.makeCgroup("repair-gone")
        defer { Harness.removeCgroup(kept) }
        #expect(d.cli("attach \(kept)").status == 0)
        #expect(d.cli("attach \(removed)").status == 0)
        // a cgroup's id is its directory's inode
        let keptID = try #require(try FileManager.default.attributesOfItem(atPath: Harness.cgroupRoot + kept)[.systemFileNumber] as? UInt64)
        d.stop(signal: SIGKILL)
        // lose the IPv4 connect hook of one guard, and a whole cgroup
        #expect(unlink("\(d.pinRoot)/cgroups/\(keptID)/bg_connect4") == 0)
        Harness.removeCgroup(removed)
        try d.start()
        let status = d.cli("status").stdout
        #expect(status.contains(kept), "\(status)")
        #expect(!status.contains(removed), "a removed cgroup's guard is dropped: \(status)")
        #expect(FileManager.default.fileExists(atPath: "\(d.pinRoot)/cgroups/\(keptID)/bg_connect4"), "the missing hook is attached again")
        let r = Harness.sh(Harness.inCgroup(kept, "curl -sS -o /dev/null http://\(Harness.host4)/"))
        #expect(r.status == 0, "\(r.stderr)")
        let events = d.waitForEvents { $0.connects(comm: "curl").contains { e in e.process?.cgroup == kept } }
        #expect(events.connects(comm: "curl").contains { e in e.process?.cgroup == kept }, "intercepted again after the repair")
    }

    @Test func aStoppedDaemonLeavesConnectsRefusedWithEPERM() throws {
        try withOwnDaemon("graceful", port: 17_404) { d, cg in
            d.stop(signal: SIGTERM)
            let script = "import socket,errno\ntry:\n  socket.create_connection(('\(Harness.host4)', 80), 5); print('connected')\nexcept OSError as e:\n  print(errno.errorcode.get(e.errno))"
            let r = Harness.sh(Harness.inCgroup(cg, "python3 -c \(Harness.shellQuote(script))"))
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "EPERM", "\(r.stdout) \(r.stderr)")
            // the stop is on record, with what stopped it
            var events: [AuditEvent] = []
            _ = try AuditLog.read(path: d.auditLog) { e, _ in events.append(e) }
            #expect(events.contains { $0.type == .daemon && $0.message?.hasPrefix("daemon stopping on SIGTERM; guards stay") == true },
                    "\(events.filter { $0.type == .daemon }.map { $0.message ?? "" })")
        }
    }

    @Test func aDaemonStoppedWithNothingGuardedLeavesNoPins() throws {
        try withOwnDaemon("unpin", port: 17_411) { d, cg in
            #expect(d.cli("detach --all").status == 0)
            #expect(FileManager.default.fileExists(atPath: d.pinRoot + "/links"), "the daemon's links are pinned while it runs")
            d.stop(signal: SIGTERM)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: d.pinRoot)) ?? []
            #expect(!FileManager.default.fileExists(atPath: d.pinRoot), "pins left after detach --all and a stop: \(left)")
            #expect(d.events().contains { $0.type == .daemon && $0.message?.hasPrefix("no cgroup is guarded: removed the pins") == true })
        }
    }

    @Test func verdictsMadeWhileNoDaemonRanAreNamedByTheRestartedOne() throws {
        // The kernel refuses (EPERM) while the daemon is down and queues the event with the slot
        // it judged by; the next daemon must know that slot's policy from the pins.
        try withOwnDaemon("downtime", port: 17_408) { d, cg in
            d.stop(signal: SIGTERM)
            let script = "import socket\ntry:\n  socket.create_connection(('\(Harness.host4)', 80), 5); print('connected')\nexcept OSError as e:\n  print('refused')"
            let r = Harness.sh(Harness.inCgroup(cg, "python3 -c \(Harness.shellQuote(script))"))
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "refused", "\(r.stdout) \(r.stderr)")
            try d.start()
            let events = d.waitForEvents(timeout: 15) { all in
                all.contains { $0.type == .connect && $0.process?.cgroup == cg && $0.process?.comm == "python3" }
            }
            let e = try #require(events.first { $0.type == .connect && $0.process?.cgroup == cg && $0.process?.comm == "python3" })
            #expect(e.policy == "default", "the policy of the slot the kernel judged by: \(e.policy ?? "nil") (\(e.reason ?? ""))")
            #expect(e.rule != "?", "\(e.rule ?? "nil")")
            let unknown = events.filter { ($0.reason ?? "").contains("unknown to this daemon") }
            #expect(unknown.isEmpty, "\(unknown.map { $0.reason ?? "" })")
        }
    }

    @Test func theDaemonTakesTheHardOpenFileLimitAndSaysSo() throws {
        try withOwnDaemon("nofile", port: 17_409) { d, _ in
            let pid = try #require(d.pid)
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2).map(String.init)
            #expect(fields.count == 2 && fields[0] == fields[1], "soft limit = hard limit: \(line)")
            let log = (try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? ""
            #expect(log.contains("open-file limit \(fields.first ?? "?") (the hard limit"), "\(log.prefix(600))")
        }
    }

    @Test func errorsAreOneLineWithWhatToDo() throws {
        try Harness.requireEnvironment()
        let env = standaloneEnvironment("errors")
        defer { try? FileManager.default.removeItem(atPath: env["BORDERGATE_STATE_DIR"]!) }
        // no daemon
        let attach = Harness.sh("\(Harness.binary) attach /nowhere", environment: env)
        #expect(attach.status == 1)
        #expect(attach.stderr.contains("no Bordergate daemon is running") && attach.stderr.contains("bordergate daemon"), "\(attach.stderr)")
        #expect(attach.stderr.split(separator: "\n").count == 1)
        // not root (from a copy of the binary: a checkout under /root or a 0750 home is out of nobody's reach)
        let copy = "/tmp/bge2e-nobody-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        #expect(Harness.sh("rm -rf \(copy) && mkdir -m 0755 \(copy) && install -m 0755 \(Harness.binary) \(copy)/bordergate").status == 0)
        let nobody = Harness.sh("setpriv --reuid=65534 --regid=65534 --clear-groups \(copy)/bordergate exec -- true", environment: env)
        #expect(nobody.status == 1)
        #expect(nobody.stderr.contains("needs root"), "\(nobody.stderr)")
        #expect(nobody.stderr.split(separator: "\n").count == 1)
        // a cgroup that does not exist
        let d = try Self.shared.get()
        let missing = d.cli("attach /bge2e/does-not-exist")
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("/bge2e/does-not-exist"), "\(missing.stderr)")
        #expect(missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        // guarding the daemon's own cgroup would loop
        let own = d.cli("attach /")
        #expect(own.status == 1 && own.stderr.contains("outside every guarded cgroup"), "\(own.stderr)")
        // a second daemon on the same socket
        let second = d.cli("daemon")
        #expect(second.status == 1 && second.stderr.contains("already running"), "\(second.stderr)")
        // bad arguments
        let since = d.cli("events --since yesterday")
        #expect(since.status != 0 && since.stderr.contains("--since"), "\(since.stderr)")
    }
}

extension EndToEnd {
    @Test func aStoppingDaemonLetsRelayedConnectionsFinishAndRefusesNewOnes() throws {
        try withOwnDaemon("drain", port: 17_484, config: DaemonFixture.builtInConfig + "proxy:\n  drain: 15s\n") { d, cg in
            // a slow download through the proxy: seconds at 4 MB/s, far more than socket buffers hold
            let out = NSTemporaryDirectory() + "bge2e-drain-download-\(getpid())"
            defer { unlink(out); unlink(out + ".err") }
            let n = 48_000_000
            let curl = Harness.inCgroup(cg, "curl -sS --limit-rate 4m -o /dev/null -w '%{size_download}' http://\(Harness.host4)/bytes/\(n); echo \" exit $?\"")
            _ = Harness.sh("(\(curl)) >\(out) 2>\(out).err </dev/null &")
            usleep(800_000)
            kill(try #require(d.pid), SIGTERM)
            // while it drains, a new guarded connect is refused
            usleep(300_000)
            let fresh = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 5 http://\(Harness.host4)/"))
            #expect(fresh.status != 0, "a connection made while the daemon stops was relayed: \(fresh.stdout)")
            let deadline = Date().addingTimeInterval(30)
            while !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("exit") && Date() < deadline { usleep(100_000) }
            let result = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(result.trimmingCharacters(in: .whitespacesAndNewlines) == "\(n) exit 0",
                    "the download finished whole: \(result) \((try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? "")")
            d.stop()
            // the download was still being relayed well after the SIGTERM, and finished whole
            let events = d.events()
            let close = events.first { $0.type == .close && ($0.bytes?.received ?? 0) >= UInt64(n) }
            #expect(close != nil, "its close event was logged")
            #expect((close?.duration_ms ?? 0) >= 2000, "the connection outlived the SIGTERM: \(close?.duration_ms ?? 0) ms")
        }
    }
}
