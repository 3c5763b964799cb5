import BordergateAudit
import Foundation
import Testing

/// The test network mapped to regions: the lower halves are Germany (EU), the upper halves the US.
let residencyTable = """
    # prefix,region
    198.51.100.0/25,DE
    198.51.100.128/25,US
    2001:db8::/33,DE
    2001:db8:8000::/33,US
    """

let residencyConfig = """
    tables:
      - path: regions.csv
        name: test
    default-policy: eu-only
    policies:
      eu-only:
        allow:
          - jurisdiction: EU
        deny:
          - host: blocked.example
      eu-audit:
        mode: audit
        allow:
          - jurisdiction: EU
      eu-plain:
        allow:
          - jurisdiction: EU
      eu-for-one-program:
        allow:
          - jurisdiction: EU
            exe: \(oneProgram)
    """

/// The only executable policy eu-for-one-program lets out: a symlink to python, made by the test.
let oneProgram = "/tmp/bge2e-one-program/python3"

extension Harness {
    static let usHost4 = "198.51.100.200"
    static let usHost6 = "2001:db8:8000::10"
}

extension EndToEnd {
    static let residency = startShared("residency", port: 17_410, config: residencyConfig, files: ["regions.csv": residencyTable])

    func withPolicy(_ name: String, policy: String, _ body: (DaemonFixture, String) throws -> Void) throws {
        try withGuardedCgroup(name, on: Self.residency, policy: policy, body)
    }

    @Test func anEUDestinationIsReachedAndAUSOneRefusedAtConnect() throws {
        try withPolicy("res-tcp", policy: "eu-only") { d, cg in
            let ok = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 http://\(Harness.host4)/"))
            #expect(ok.status == 0, "curl to the EU host failed: \(ok.stderr)")

            let refused = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 http://\(Harness.usHost4)/"))
            #expect(refused.status == 7, "curl should fail to connect: \(refused.status) \(refused.stderr)")
            #expect(refused.stderr.contains("Couldn't connect"), "curl says: \(refused.stderr)")
            let refused6 = Harness.sh(Harness.inCgroup(cg, "curl -sS -g --max-time 10 http://[\(Harness.usHost6)]/"))
            #expect(refused6.status == 7, "IPv6: \(refused6.stderr)")
            // the errno itself, as a shell prints it
            let bash = Harness.sh(Harness.inCgroup(cg, "bash -c 'exec 3<>/dev/tcp/\(Harness.usHost4)/80'"))
            #expect(bash.status != 0 && bash.stderr.contains("Operation not permitted"), "bash says: \(bash.stderr)")

            let events = d.waitForEvents { all in
                all.connects(comm: "curl").filter { $0.process?.cgroup == cg && $0.verdict == .deny }.count >= 2
                    && all.connects(comm: "bash").contains { $0.process?.cgroup == cg && $0.verdict == .deny }
            }
            let mine = events.connects(comm: "curl").filter { $0.process?.cgroup == cg }
            let deny = try #require(mine.first { $0.verdict == .deny && $0.destination?.ip == Harness.usHost4 })
            #expect(deny.process?.exe == "/usr/bin/curl")
            #expect(deny.destination?.region == "US" && deny.destination?.country == "US")
            #expect(deny.destination?.jurisdictions?.first == "US")
            #expect(deny.destination?.jurisdictions?.contains("EU") == false)
            #expect(deny.policy == "eu-only")
            #expect(deny.rule == "default")
            #expect(deny.reason == "country US is not allowed by policy eu-only")
            #expect(mine.contains { $0.verdict == .deny && $0.destination?.ip == Harness.usHost6 })
            // the EU connection went through the proxy (a hostname rule exists) and names its host
            let allowed = try #require(mine.first { $0.destination?.ip == Harness.host4 && $0.verdict == .redirect })
            #expect(allowed.destination?.host == Harness.host4)
            #expect(allowed.destination?.country == "DE")
            #expect(allowed.destination?.jurisdictions?.contains("EU") == true)
            #expect(allowed.reason?.contains("allowed by policy eu-only (allow[0]: jurisdiction EU)") == true, "\(allowed.reason ?? "")")
        }
    }

    @Test func udpToAForbiddenRegionIsRefused() throws {
        try withPolicy("res-udp", policy: "eu-only") { d, cg in
            let script = """
                import socket, errno, sys
                def probe(addr, family, connected):
                    s = socket.socket(family, socket.SOCK_DGRAM)
                    s.settimeout(5)
                    try:
                        if connected:
                            s.connect((addr, 7)); s.send(b"hi")
                        else:
                            s.sendto(b"hi", (addr, 7))
                        return s.recv(100).decode()
                    except PermissionError as e:
                        return "EPERM" if e.errno == errno.EPERM else str(e)
                    except Exception as e:
                        return type(e).__name__
                print(probe("\(Harness.host4)", socket.AF_INET, False))
                print(probe("\(Harness.usHost4)", socket.AF_INET, False))
                print(probe("\(Harness.usHost4)", socket.AF_INET, True))
                print(probe("\(Harness.usHost6)", socket.AF_INET6, False))
                print(probe("\(Harness.host6)", socket.AF_INET6, True))
                """
            let r = try Harness.python(script, inCgroup: cg)
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines == ["echo:hi", "EPERM", "EPERM", "EPERM", "echo:hi"], "got \(lines), stderr \(r.stderr)")
            let events = d.waitForEvents { all in
                all.connects().filter { $0.process?.cgroup == cg && $0.protocol == .udp && $0.verdict == .deny }.count >= 3
            }
            let udp = events.connects().filter { $0.process?.cgroup == cg && $0.protocol == .udp }
            #expect(udp.contains { $0.verdict == .deny && $0.destination?.ip == Harness.usHost4 && $0.destination?.region == "US" })
            #expect(udp.contains { $0.verdict == .pass && $0.destination?.ip == Harness.host4 })
        }
    }

    @Test func socketsTheVerdictHooksCannotSeeAreRefused() throws {
        try withPolicy("res-raw", policy: "eu-only") { _, cg in
            let script = """
                import socket, errno
                def make(*args):
                    try:
                        socket.socket(*args).close()
                        return "created"
                    except PermissionError as e:
                        return errno.errorcode.get(e.errno, str(e))
                    except OSError as e:
                        return "unsupported: " + str(e)
                print(make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
                print(make(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))
                print(make(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP))
                print(make(socket.AF_INET, socket.SOCK_STREAM, 0))
                print(make(socket.AF_INET6, socket.SOCK_DGRAM, 0))
                """
            let r = try Harness.python(script, inCgroup: cg)
            let lines = r.stdout.split(separator: "\n").map(String.init)
            try #require(lines.count == 5, "got \(lines), stderr \(r.stderr)")
            #expect(lines[0] == "EPERM" && lines[2] == "EPERM", "raw sockets: \(lines)")
            // an ICMP echo socket: EACCES when the kernel's own ping_group_range refuses it first
            #expect(lines[1] == "EPERM" || lines[1] == "EACCES", "ICMP: \(lines)")
            #expect(lines[3] == "created" && lines[4] == "created", "TCP and UDP: \(lines)")
        }
    }

    @Test func aHostnameRuleRefusesWithA403() throws {
        try withPolicy("res-host", policy: "eu-only") { d, cg in
            let r = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 -w '%{http_code}' -H 'Host: blocked.example' http://\(Harness.host4)/"))
            #expect(r.stdout.hasPrefix("bordergate: "), "body: \(r.stdout)")
            #expect(r.stdout.hasSuffix("403"), "status: \(r.stdout)")
            let events = d.waitForEvents { all in all.connects(comm: "curl").contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
            let deny = try #require(events.connects(comm: "curl").first { $0.process?.cgroup == cg && $0.verdict == .deny })
            #expect(deny.destination?.host == "blocked.example")
            #expect(deny.rule == "deny[0]: host blocked.example")
            #expect(deny.protocol == .http)
            #expect(deny.reason == "host blocked.example in country DE is refused by policy eu-only (deny[0]: host blocked.example)")
        }
    }

    @Test func aHostnameRuleRefusesTLSWithAnAlert() throws {
        try withPolicy("res-tls", policy: "eu-only") { d, cg in
            // The test host speaks no TLS on 80, but the proxy decides before it dials anyone.
            let script = """
                import socket, ssl
                ctx = ssl.create_default_context()
                s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
                try:
                    ctx.wrap_socket(s, server_hostname="blocked.example")
                    print("handshake completed")
                except ssl.SSLError as e:
                    print(e.reason)
                """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "TLSV1_ALERT_ACCESS_DENIED", "got \(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
            let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
            #expect(deny.protocol == .tls)
            #expect(deny.destination?.host == "blocked.example")
            #expect(deny.rule == "deny[0]: host blocked.example")
        }
    }

    @Test func auditModeLetsItThroughAndReportsIt() throws {
        try withPolicy("res-audit", policy: "eu-audit") { d, cg in
            let r = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 http://\(Harness.usHost4)/"))
            #expect(r.status == 0, "audit mode must not refuse: \(r.stderr)")
            let events = d.waitForEvents { all in all.connects(comm: "curl").contains { $0.process?.cgroup == cg } }
            let e = try #require(events.connects(comm: "curl").first { $0.process?.cgroup == cg })
            #expect(e.verdict == .audit)
            #expect(e.reason == "audit mode, would be refused: country US is not allowed by policy eu-audit")
            #expect(e.policy == "eu-audit")
        }
    }

    @Test func aGrantOpensAndClosesOnItsOwn() throws {
        try withPolicy("res-grant", policy: "eu-plain") { d, cg in
            let curl = Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.usHost4)/")
            #expect(Harness.sh(curl).status == 7, "refused before the grant")
            let g = d.cli("grant --cgroup \(cg) --allow US --for 8s --reason 'vendor download, ticket 42'")
            try #require(g.status == 0, "grant failed: \(g.stderr)")
            #expect(g.stdout.contains("may reach US until"))
            let during = Harness.sh(curl)
            #expect(during.status == 0, "the grant should open the US host: \(during.stderr)")
            let status = d.cli("status")
            #expect(status.stdout.contains("grant g"), "\(status.stdout)")
            let events = d.waitForEvents(timeout: 20) { all in all.contains { $0.type == .policy && $0.verdict == .grantExpired && $0.message?.contains(cg) == true } }
            let granted = try #require(events.first { $0.type == .policy && $0.verdict == .grant && $0.message?.contains(cg) == true })
            #expect(granted.reason == "vendor download, ticket 42")
            #expect(events.contains { $0.type == .policy && $0.verdict == .grantExpired && $0.message?.contains(cg) == true })
            let pass = try #require(events.connects(comm: "curl").first { $0.process?.cgroup == cg && $0.verdict == .pass })
            #expect(pass.rule?.hasPrefix("grant g") == true)
            #expect(pass.reason?.contains("vendor download, ticket 42") == true)
            #expect(Harness.sh(curl).status == 7, "refused again after expiry")
        }
    }

    @Test func aGrantEndsOnTimeEvenWithoutADaemonAndARestartKeepsThePolicy() throws {
        try withPolicy("res-grant-dead", policy: "eu-plain") { d, cg in
            let curl = Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.usHost4)/")
            let g = d.cli("grant --cgroup \(cg) --allow US --for 8s --reason 'while the daemon is away'")
            try #require(g.status == 0, "grant failed: \(g.stderr)")
            d.stop(signal: SIGKILL)
            #expect(Harness.sh(curl).status == 0, "the grant holds while it lasts, daemon or not")
            sleep(9)
            let after = Harness.sh(curl)
            #expect(after.status == 7, "the kernel ended the grant on its own: \(after.stderr)")
            try d.start()
            let status = d.cli("status")
            #expect(status.stdout.contains("\(cg)  policy eu-plain"), "the policy survives a restart: \(status.stdout)")
            #expect(!status.stdout.contains("grant g"), "grants do not: \(status.stdout)")
            #expect(Harness.sh(curl).status == 7)
            #expect(Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.host4)/")).status == 0)
        }
    }

    @Test func aProcessThatExecsAnAllowedProgramAfterItConnectedIsNotDecidedAsThatProgram() throws {
        // The proxy decides when it accepts, and a connection may wait in its backlog: a program
        // the policy does not let out connects, execs one it does, and the allowed program's name
        // must not decide the connection made before it ran.
        try withPolicy("res-exec-race", policy: "eu-for-one-program") { d, cg in
            let dir = (oneProgram as NSString).deletingLastPathComponent
            try Harness.withRenamedPython(in: dir) { _ in
                let talk = Harness.pythonTalk + "import sys\n"
                // the allowed program itself gets through: the policy does let it out
                let direct = "\(dir)/direct.py"
                try (talk + "\ntalk(socket.create_connection(('\(Harness.host4)', 7), timeout=10))\n")
                    .write(toFile: direct, atomically: true, encoding: .utf8)
                let allowed = Harness.sh(Harness.inCgroup(cg, "exec \(oneProgram) \(direct)"))
                #expect(allowed.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "answered", "\(allowed.stdout) \(allowed.stderr)")
                // /usr/bin/python3 connects while the daemon is stopped (the handshake completes into
                // its backlog), then execs the allowed program, which wakes the daemon and uses the socket
                let pid = try #require(d.pid)
                let after = "\(dir)/after.py"
                try (talk + "\nimport os, signal\nos.kill(\(pid), signal.SIGCONT)\ntalk(socket.socket(fileno=int(sys.argv[1])))\n")
                    .write(toFile: after, atomically: true, encoding: .utf8)
                let before = "\(dir)/before.py"
                try """
                    import os, socket
                    s = socket.create_connection(('\(Harness.host4)', 7), timeout=10)
                    os.set_inheritable(s.fileno(), True)
                    os.execv('\(oneProgram)', ['python3', '\(after)', str(s.fileno())])
                    """.write(toFile: before, atomically: true, encoding: .utf8)
                kill(pid, SIGSTOP)
                defer { kill(pid, SIGCONT) }
                let r = Harness.sh(Harness.inCgroup(cg, "exec /usr/bin/python3 \(before)"))
                #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "reset", "\(r.stdout) \(r.stderr)")
                let events = d.waitForEvents { all in all.connects(comm: "python3").contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
                let mine = events.connects(comm: "python3").filter { $0.process?.cgroup == cg }
                #expect(mine.contains { $0.verdict == .redirect && $0.process?.exe == oneProgram })
                let deny = try #require(mine.first { $0.verdict == .deny })
                #expect(deny.process?.exe == nil, "named by a program that did not connect: \(deny.process?.exe ?? "")")
                #expect(deny.reason?.contains("the process is unknown") == true, "\(deny.reason ?? "")")
                #expect(!mine.contains { $0.verdict == .redirect && $0.process?.exe == nil }, "nothing unnamed got through")
            }
        }
    }

    @Test func aHeadThatCannotBeReadIsRefusedWhenTheHostnameDecides() throws {
        try withPolicy("res-garbled", policy: "eu-only") { d, cg in
            // a TLS record header that promises a ClientHello and then lies about its length
            let script = """
                import socket
                s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
                s.sendall(bytes([0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0xff, 0xff]) + b"x" * 43)
                try:
                    data = s.recv(100)
                    print("closed" if data == b"" else "answered")
                except ConnectionResetError:
                    print("reset")
                """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "reset", "got \(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
            let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
            #expect(deny.reason?.contains("could not be read") == true, "\(deny.reason ?? "")")
        }
    }

    @Test func execThroughTheDaemonTakesAPolicyAndSummarizesRefusals() throws {
        let d = try Self.residency.get()
        let command = "bash -c 'curl -sS -o /dev/null http://\(Harness.host4)/; curl -sS --max-time 5 http://\(Harness.usHost4)/'"
        // the same run without the summary: what the summary costs is the difference
        var started = Date()
        #expect(d.cli("exec --quiet --policy eu-plain -- \(command)").status == 7)
        let quiet = Date().timeIntervalSince(started)
        started = Date()
        let r = d.cli("exec --policy eu-plain -- \(command)")
        #expect(r.status == 7, "the command's status is passed on: \(r.stderr)")
        #expect(r.stderr.contains("bash made 2 connections"), "\(r.stderr)")
        #expect(r.stderr.contains("→ \(Harness.usHost4):80  deny  country US is not allowed by policy eu-plain"), "\(r.stderr)")
        #expect(r.stderr.contains("→ \(Harness.host4):80  pass"), "\(r.stderr)")
        // a refusal has no close event to wait for (waiting for one would cost 2 s)
        let summarized = Date().timeIntervalSince(started)
        #expect(summarized < quiet + 1.0, "took \(summarized) s, \(quiet) s without the summary")
    }

    @Test func theHistoryAskedForRightAfterARefusalHoldsIt() throws {
        // The kernel's verdicts reach the daemon through a ring buffer it drains every 10 ms: an
        // `events` request (no follow) must wait for the drain, or a tool that checks the log
        // right after it was refused would not find its refusal.
        try withPolicy("res-history", policy: "eu-only") { d, cg in
            let script = """
                import json, socket
                found = []
                for i in range(20):
                    try:
                        socket.create_connection(('\(Harness.usHost4)', 80), timeout=10)
                        print('connected'); break
                    except PermissionError:
                        pass
                    c = socket.socket(socket.AF_UNIX)
                    c.connect('\(d.socket)')
                    c.sendall(json.dumps({'command': 'events', 'filter': {'cgroup': '\(cg)', 'verdict': 'deny'}}).encode() + b'\\n')
                    data = b''
                    while True:
                        chunk = c.recv(65536)
                        if not chunk: break
                        data += chunk
                    found.append(sum(1 for l in data.splitlines() if b'"type":"connect"' in l))
                print(found)
                """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(Array(1...20))", "refusals found after each: \(r.stdout) \(r.stderr)")
        }
    }

    @Test func standaloneExecTakesAPolicy() throws {
        try Harness.requireEnvironment()
        let dir = "/tmp/bge2e-standalone-policy-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try residencyTable.write(toFile: dir + "/regions.csv", atomically: true, encoding: .utf8)
        try residencyConfig.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let env = ["BORDERGATE_STATE_DIR": dir, "BORDERGATE_CONFIG": dir + "/config.yaml",
                   "BORDERGATE_CONTROL_SOCKET": dir + "/none.sock", "BORDERGATE_PIN_ROOT": "/sys/fs/bpf/bge2e_standalone_policy"]
        let refused = Harness.sh("\(Harness.binary) exec --policy eu-plain -- curl -sS --max-time 10 http://\(Harness.usHost4)/", environment: env)
        #expect(refused.status == 7, "\(refused.stderr)")
        #expect(refused.stderr.contains("deny"), "the summary shows the refusal: \(refused.stderr)")
        let ok = Harness.sh("\(Harness.binary) exec --policy eu-plain -- curl -sS --max-time 10 http://\(Harness.host4)/", environment: env)
        #expect(ok.status == 0, "\(ok.stderr)")
        let unknown = Harness.sh("\(Harness.binary) exec --policy nope -- true", environment: env)
        #expect(unknown.status == 1 && unknown.stderr.contains("no policy named 'nope'"), "\(unknown.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/attachments.json"), "a standalone exec saves no assignments")
    }

    @Test func aBrokenConfigOnReloadLeavesTheOldOneInForce() throws {
        let d = try Self.residency.get()
        let good = try String(contentsOfFile: d.configPath, encoding: .utf8)
        defer {
            try? good.write(toFile: d.configPath, atomically: true, encoding: .utf8)
            d.cli("reload")
        }
        // a rule appended to the last policy's list, on the line after the file's last
        let line = good.split(separator: "\n", omittingEmptySubsequences: false).count + 1
        try (good + "\n      - countrie: FR\n").write(toFile: d.configPath, atomically: true, encoding: .utf8)
        let r = d.cli("reload")
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(d.configPath):\(line):9: unknown key 'countrie' in a rule"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
        try withPolicy("res-reload", policy: "eu-only") { _, cg in
            #expect(Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.usHost4)/")).status == 7)
            #expect(Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.host4)/")).status == 0)
        }
        // a corrupt table is refused the same way
        try good.write(toFile: d.configPath, atomically: true, encoding: .utf8)
        let tables = d.stateDir + "/regions.csv"
        let table = try String(contentsOfFile: tables, encoding: .utf8)
        defer { try? table.write(toFile: tables, atomically: true, encoding: .utf8) }
        try (table + "\n198.51.100.300/32,US\n").write(toFile: tables, atomically: true, encoding: .utf8)
        let t = d.cli("reload")
        #expect(t.status == 1 && t.stderr.contains("regions.csv:"), "\(t.stderr)")
        let errors = { (all: [AuditEvent]) in all.filter { $0.type == .policy && $0.verdict == .error } }
        #expect(errors(d.waitForEvents { errors($0).count >= 2 }).count >= 2)
        try table.write(toFile: tables, atomically: true, encoding: .utf8)

        // a good change through SIGHUP takes effect
        try good.replacingOccurrences(of: "  eu-plain:\n    allow:\n      - jurisdiction: EU",
                                      with: "  eu-plain:\n    allow:\n      - jurisdiction: EU\n      - country: US")
            .write(toFile: d.configPath, atomically: true, encoding: .utf8)
        kill(try #require(d.pid), SIGHUP)
        _ = d.waitForEvents { all in all.contains { $0.type == .policy && $0.message?.contains("(SIGHUP)") == true } }
        try withPolicy("res-hup", policy: "eu-plain") { _, cg in
            #expect(Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 -o /dev/null http://\(Harness.usHost4)/")).status == 0)
        }
    }

    @Test func regionsLookupNamesTheTableAndPrefix() throws {
        let d = try Self.residency.get()
        let r = d.cli("regions lookup -o json 198.51.100.7 \(Harness.usHost4) 2001:db8::10 203.0.113.5 127.0.0.1")
        try #require(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        try #require(lines.count == 5, "\(r.stdout)")
        #expect(lines[0]["region"] as? String == "DE" && lines[0]["table"] as? String == "test" && lines[0]["prefix"] as? String == "198.51.100.0/25")
        #expect(lines[0]["jurisdictions"] as? [String] == ["DE", "EU", "EEA"])
        #expect(lines[1]["region"] as? String == "US" && lines[1]["prefix"] as? String == "198.51.100.128/25")
        #expect(lines[2]["prefix"] as? String == "2001:db8::/33")
        #expect(lines[3]["region"] is NSNull)
        #expect(lines[4]["region"] as? String == "loopback" && lines[4]["table"] as? String == "special")
        let text = d.cli("regions lookup \(Harness.usHost4)")
        #expect(text.stdout.contains("region US") && text.stdout.contains("table test") && text.stdout.contains("prefix 198.51.100.128/25"))
    }

    @Test func policyCheckPointsAtTheMistake() throws {
        let d = try Self.residency.get()
        let bad = d.stateDir + "/bad.yaml"
        try "policies:\n  p:\n    mode: enforce\n    allow:\n      - country: DE\n      - jurisdiction: EU\n        uid: me\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let r = d.cli("policy check \(bad)")
        #expect(r.status == 1)
        #expect(r.stderr == "bordergate: \(bad):7:14: uid must be a number\n", "\(r.stderr)")
        let ok = d.cli("policy check \(d.configPath)")
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("policy eu-only (default)"))
        #expect(ok.stdout.contains("table test"))
        #expect(ok.stdout.contains("recording: retain 30d, max-size 2.0 GiB"), "\(ok.stdout)")
    }

    @Test func statusReportsTablesAndKernelMemory() throws {
        let d = try Self.residency.get()
        let r = d.cli("status")
        #expect(r.stdout.contains("config      \(d.configPath)"), "\(r.stdout)")
        #expect(r.stdout.contains("kernel maps"), "\(r.stdout)")
        #expect(r.stdout.contains("test ("), "\(r.stdout)")
    }
}

extension EndToEnd {
    @Test func aProgramBindMountedOverAnAllowedOnesPathIsNotThatProgram() throws {
        // Finding 2: in `unshare -Urm` a tool bind-mounted one program over another's path and
        // exec'd it; the path was read in its own mount namespace, so an `exe:` rule for the
        // other program let it out. Now the executed file must be the file at that path here.
        try withUserNamespaces {
            try withPolicy("res-exe-spoof", policy: "eu-for-one-program") { d, cg in
                let dir = (oneProgram as NSString).deletingLastPathComponent
                try Harness.withRenamedPython(in: dir) { _ in
                    let honest = Harness.sh(Harness.inCgroup(cg, "setpriv --reuid=65534 --regid=65534 --clear-groups "
                        + "\(oneProgram) -c \"import urllib.request as u; print(u.urlopen('http://\(Harness.host4)/', timeout=10).read().decode().strip())\""))
                    #expect(honest.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "hello from the test host",
                            "the allowed program itself gets out: \(honest.stdout) \(honest.stderr)")
                    let spoof = Harness.sh(Harness.inCgroup(cg, "setpriv --reuid=65534 --regid=65534 --clear-groups unshare -Urm sh -c "
                        + Harness.shellQuote("mount --bind /usr/bin/curl \(oneProgram) && exec \(oneProgram) -sS --max-time 10 http://\(Harness.host4)/")))
                    #expect(!spoof.stdout.contains("hello from the test host"), "curl under python's name got out: \(spoof.stdout) \(spoof.stderr)")
                    #expect(spoof.stdout.hasPrefix("bordergate: "), "refused by the proxy: \(spoof.stdout) \(spoof.stderr)")
                    let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
                    let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
                    #expect(deny.process?.exe == nil, "named by a program that is not the one at that path: \(deny.process?.exe ?? "")")
                    #expect(deny.process?.comm == "python3", "\(String(describing: deny.process))")
                }
            }
        }
    }
}
