import BordergateAudit
import Foundation
import Testing

/// Findings 7 and 8 of the hardening issue: a guarded tool that floods the audit with refusals,
/// and one that holds as many proxied connections as it can. Each test runs its own daemon, so
/// the log it measures and verifies is its own.
extension EndToEnd {
    func withFloodDaemon(_ name: String, port: Int, config: String, files: [String: String] = [:], policy: String? = nil,
                         environment: [String: String] = [:], _ body: (DaemonFixture, String) throws -> Void) throws {
        try Harness.requireEnvironment()
        let d = DaemonFixture(name, port: port, config: config, files: files)
        d.extraEnvironment = environment
        defer { d.tearDown() }
        d.cli("detach --all")
        try d.start()
        let cg = try Harness.makeCgroup(name)
        defer { Harness.removeCgroup(cg) }
        let r = d.cli("attach \(cg)" + (policy.map { " --policy \($0)" } ?? ""))
        try #require(r.status == 0, "attach failed: \(r.stderr)")
        try body(d, cg)
    }

    /// `name=N` from `bordergate status`'s counters.
    static func statusCounter(_ status: String, _ name: String) -> UInt64? {
        guard let r = status.range(of: " \(name)=") else { return nil }
        return UInt64(status[r.upperBound...].prefix { $0.isNumber })
    }

    static func fileSize(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    @Test func aFloodOfRefusalsIsAggregatedAndTheAllowedConnectionStillRecorded() throws {
        // Finding 7: processes doing refused connects as fast as they can dropped over a million
        // ring-buffer events, lost allowed connections' events and grew the log by 447 MB in 10 s.
        try withFloodDaemon("flood", port: 17_440, config: residencyConfig, files: ["regions.csv": residencyTable],
                            policy: "eu-plain") { d, cg in
            let before = Self.fileSize(d.auditLog)
            let r = try runPython("""
                import os, socket, time
                end = time.time() + 3
                children = []
                for i in range(7):
                    rd, wr = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(rd)
                        n = 0
                        while time.time() < end:
                            s = socket.socket()
                            try:
                                # six hammer two ports; the seventh scans, a new destination each time
                                s.connect(('\(Harness.usHost4)', 80 + i % 2 if i < 6 else 1 + n % 60000))
                            except PermissionError:
                                n += 1
                            s.close()
                        os.write(wr, str(n).encode())
                        os._exit(0)
                    os.close(wr)
                    children.append((pid, rd))
                time.sleep(1)
                s = socket.create_connection(('\(Harness.host4)', 80), timeout=10)
                s.sendall(b'GET / HTTP/1.0\\r\\nHost: de.example\\r\\n\\r\\n')
                answer = b''
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    answer += chunk
                s.close()
                print('allowed', os.getpid(), b'hello' in answer, flush=True)
                total = 0
                for pid, rd in children:
                    os.waitpid(pid, 0)
                    total += int(os.read(rd, 64) or b'0')
                print('refused', total, flush=True)
                """, inCgroup: cg, asNobody: true)
            let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            let allowed = try #require(lines.first { $0.first == "allowed" }, "\(r.stdout) \(r.stderr)")
            #expect(allowed.last == "True", "the allowed host answered: \(r.stdout)")
            let allowedPID = try #require(Int(allowed[1]))
            let refused = try #require(lines.first { $0.first == "refused" }.flatMap { UInt64($0[1]) }, "\(r.stdout) \(r.stderr)")
            #expect(refused > 10_000, "a flood: \(refused) refused connects")

            func counted(_ all: [AuditEvent]) -> UInt64 {
                all.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny }.reduce(0) { $0 + ($1.count ?? 1) }
            }
            // the kernel's counts of the last seconds arrive with the sweep after them
            let events = d.waitForEvents(timeout: 15) { counted($0) >= refused && $0.connects(pid: allowedPID).contains { $0.verdict == .pass } }
            #expect(counted(events) == refused, "every refusal is counted once: \(counted(events)) of \(refused)")
            let pass = events.connects(pid: allowedPID).first { $0.verdict == .pass }
            #expect(pass?.destination?.ip == Harness.host4, "the allowed connection's event is there")
            let denies = events.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny }
            #expect(denies.contains { ($0.count ?? 0) > 100 }, "refusals are aggregated with a count")
            // 500 first refusals a cgroup a second, then the scan is only counted
            #expect(denies.count < 4 * 1500, "\(denies.count) refusal events for \(refused) refusals")
            let unnamed = denies.filter { $0.destination == nil }
            #expect(!unnamed.isEmpty && unnamed.allSatisfy { ($0.count ?? 0) > 0 && $0.reason?.contains("more than 500") == true },
                    "the scan past the budget is one counted event a second: \(unnamed.count)")
            #expect(denies.allSatisfy { ($0.destination == nil || $0.destination?.ip == Harness.usHost4) && $0.policy == "eu-plain" })
            // whatever the rings could not take is a drop event with its count (none, usually)
            let status = d.cli("status").stdout
            let ringDrops = try #require(Self.statusCounter(status, "events_ring_drops")) + (Self.statusCounter(status, "refusals_ring_drops") ?? 0)
            let drops = events.filter { $0.type == .drop && $0.reason?.hasPrefix("kernel") == true }
            #expect(drops.reduce(0) { $0 + ($1.count ?? 0) } == ringDrops, "drop events \(drops) for \(ringDrops) ring drops")
            #expect(drops.allSatisfy { ($0.count ?? 0) > 0 })
            let heap = status.range(of: "heap in use ").flatMap { Double(status[$0.upperBound...].prefix { $0.isNumber || $0 == "." }) }
            #expect((heap ?? 0) < 64, "the daemon's heap after the flood: \(heap ?? -1) MiB")
            let grown = Self.fileSize(d.auditLog) - before
            #expect(grown < 4 << 20, "the log grew by \(grown) bytes")
            d.stop()
            let verified = d.cli("audit verify")
            #expect(verified.status == 0 && verified.stdout.contains("ok: "), "\(verified.stdout) \(verified.stderr)")
        }
    }

    @Test func proxiedConnectionsPastTheCgroupLimitAreRefusedAtConnect() throws {
        // Finding 8: one `nobody` held 10,500 idle redirected connections; the daemon ran out of
        // descriptors and reset every other cgroup's connections.
        let config = """
            proxy:
              max-connections-per-cgroup: 50
            policies:
              default:
                inspect: all
                unknown: allow
            """
        try withFloodDaemon("limit", port: 17_441, config: config) { d, cg in
            let other = try Harness.makeCgroup("limit-other")
            defer { d.cli("detach \(other)"); Harness.removeCgroup(other) }
            try #require(d.cli("attach \(other)").status == 0)
            let path = NSTemporaryDirectory() + "bge2e-limit-\(getpid())"
            let go = path + ".go"
            defer { unlink(go) }
            let script = """
                import os, socket, time
                held, refused = [], 0
                for i in range(60):
                    s = socket.socket()
                    try:
                        s.connect(('\(Harness.host4)', 80))
                        held.append(s)
                    except PermissionError:
                        refused += 1
                        s.close()
                print('held', len(held), 'refused', refused, flush=True)
                while not os.path.exists('\(go)'):
                    time.sleep(0.05)
                for s in held:
                    s.close()
                s = socket.create_connection(('\(Harness.host4)', 80), timeout=10)
                s.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')
                answer = b''
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    answer += chunk
                print('after', b'hello' in answer, flush=True)
                """
            let file = path + ".py"
            try script.write(toFile: file, atomically: true, encoding: .utf8)
            chmod(file, 0o644)
            defer { unlink(file); unlink(path + ".out"); unlink(path + ".err") }
            let pid = try #require(Harness.spawn(["/bin/bash", "-c", Harness.inCgroup(cg, "\(Self.nobody) /usr/bin/python3 \(file)")],
                                                 stdout: path + ".out", stderr: path + ".err"))
            var out = ""
            for _ in 0..<500 where !out.contains("held") {
                usleep(20_000)
                out = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
            }
            #expect(out.contains("held 50 refused 10"), "\(out) \((try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? "")")
            let holding = d.cli("status").stdout
            #expect(holding.contains("\(cg)  policy default, 1 process(es), 50 proxied"), "\(holding)")
            // another cgroup is not held back by this one's connections
            let elsewhere = Harness.sh(Harness.inCgroup(other, "curl -sS --max-time 10 http://\(Harness.host4)/"))
            #expect(elsewhere.stdout.contains("hello from the test host"), "\(elsewhere.stderr)")
            try "".write(toFile: go, atomically: true, encoding: .utf8)
            _ = Harness.wait(pid, timeout: 30)
            out = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
            #expect(out.contains("after True"), "closing them gave the slots back: \(out)")
            let released = d.cli("status").stdout
            #expect(released.contains("\(cg)  policy default, 0 process(es), 0 proxied"), "\(released)")

            let limited = { (all: [AuditEvent]) in
                all.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny && $0.reason?.contains("proxied connections") == true }
            }
            let events = d.waitForEvents(timeout: 10) { limited($0).reduce(0) { $0 + ($1.count ?? 1) } >= 10 }
            let refusals = limited(events)
            #expect(refusals.reduce(0) { $0 + ($1.count ?? 1) } == 10, "\(refusals)")
            #expect(refusals.first?.process?.uid == 65534)
            #expect(refusals.first?.destination?.ip == Harness.host4)
        }
    }

    @Test func proxiedConnectionsPastTheUserLimitAreRefusedAcrossCgroups() throws {
        // the same user in two cgroups shares one count; another user is not held back
        let config = """
            proxy:
              max-connections-per-cgroup: 0
              max-connections-per-uid: 30
            policies:
              default:
                inspect: all
                unknown: allow
            """
        try withFloodDaemon("uidlimit", port: 17_442, config: config) { d, cg in
            let other = try Harness.makeCgroup("uidlimit-other")
            defer { d.cli("detach \(other)"); Harness.removeCgroup(other) }
            try #require(d.cli("attach \(other)").status == 0)
            let path = NSTemporaryDirectory() + "bge2e-uidlimit-\(getpid())"
            let go = path + ".go"
            defer { unlink(go) }
            func hold(_ n: Int, _ tag: String) -> String {
                """
                import os, socket, time
                held, refused = [], 0
                for i in range(\(n)):
                    s = socket.socket()
                    try:
                        s.connect(('\(Harness.host4)', 80))
                        held.append(s)
                    except PermissionError:
                        refused += 1
                print('\(tag)', len(held), refused, flush=True)
                while not os.path.exists('\(go)'):
                    time.sleep(0.05)
                """
            }
            var pids: [pid_t] = []
            defer { try? "".write(toFile: go, atomically: true, encoding: .utf8); for p in pids { _ = Harness.wait(p, timeout: 10) } }
            for (i, (group, n)) in [(cg, 20), (other, 20)].enumerated() {
                let file = path + "-\(i).py"
                try hold(n, "t\(i)").write(toFile: file, atomically: true, encoding: .utf8)
                chmod(file, 0o644)
                let pid = try #require(Harness.spawn(["/bin/bash", "-c", Harness.inCgroup(group, "\(Self.nobody) /usr/bin/python3 \(file)")],
                                                     stdout: path + ".out", stderr: path + ".err"))
                pids.append(pid)
                var out = ""
                for _ in 0..<500 where !out.contains("t\(i) ") {
                    usleep(20_000)
                    out = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
                }
            }
            defer { for f in [".out", ".err", "-0.py", "-1.py"] { unlink(path + f) } }
            let out = (try? String(contentsOfFile: path + ".out", encoding: .utf8)) ?? ""
            #expect(out.contains("t0 20 0") && out.contains("t1 10 10"), "\(out) \((try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? "")")
            // root in the second cgroup has a count of its own
            let root = Harness.sh(Harness.inCgroup(other, "curl -sS --max-time 10 http://\(Harness.host4)/"))
            #expect(root.stdout.contains("hello from the test host"), "\(root.stderr)")
            let events = d.waitForEvents(timeout: 10) { all in
                all.connects().filter { $0.process?.cgroup == other && $0.verdict == .deny }.reduce(0) { $0 + ($1.count ?? 1) } >= 10
            }
            let refused = events.connects().filter { $0.process?.cgroup == other && $0.verdict == .deny }
            #expect(refused.reduce(0) { $0 + ($1.count ?? 1) } == 10)
            #expect(refused.allSatisfy { $0.process?.uid == 65534 && $0.reason?.contains("max-connections-per-uid") == true })
        }
    }

    @Test func refusalsTheRingCannotTakeAreStillCountedAndTheDropIsAnEvent() throws {
        // A refusals ring of one page (a test knob) overflows at the first burst of a port scan:
        // each refusal is still counted, and what the ring lost is a drop event with its count.
        try withFloodDaemon("drops", port: 17_443, config: residencyConfig, files: ["regions.csv": residencyTable],
                            policy: "eu-plain", environment: ["BORDERGATE_TEST_REFUSALS_RING_BYTES": "4096"]) { d, cg in
            let r = try runPython("""
                import os, socket, time
                end = time.time() + 2
                children = []
                for i in range(4):
                    rd, wr = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        os.close(rd)
                        n = 0
                        while time.time() < end:
                            s = socket.socket()
                            try:
                                s.connect(('\(Harness.usHost4)', 1 + (i * 15000 + n) % 60000))
                            except PermissionError:
                                n += 1
                            s.close()
                        os.write(wr, str(n).encode())
                        os._exit(0)
                    os.close(wr)
                    children.append((pid, rd))
                total = 0
                for pid, rd in children:
                    os.waitpid(pid, 0)
                    total += int(os.read(rd, 64) or b'0')
                print('refused', total, flush=True)
                """, inCgroup: cg, asNobody: true)
            let refused = try #require(r.stdout.split(separator: " ").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) },
                                       "\(r.stdout) \(r.stderr)")
            func counted(_ all: [AuditEvent]) -> UInt64 {
                all.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny }.reduce(0) { $0 + ($1.count ?? 1) }
            }
            let events = d.waitForEvents(timeout: 15) { counted($0) >= refused }
            #expect(counted(events) == refused, "every refusal is counted once: \(counted(events)) of \(refused)")
            let status = d.cli("status").stdout
            let ringDrops = try #require(Self.statusCounter(status, "refusals_ring_drops"))
            #expect(ringDrops > 0, "a page-sized ring overflows: \(status)")
            let drops = events.filter { $0.type == .drop && $0.reason == "kernel refusals ring full" }
            #expect(!drops.isEmpty && drops.allSatisfy { ($0.count ?? 0) > 0 })
            #expect(drops.reduce(0) { $0 + ($1.count ?? 0) } == ringDrops, "\(drops.count) drop events for \(ringDrops) ring drops")
            d.stop()
            let verified = d.cli("audit verify")
            #expect(verified.status == 0 && verified.stdout.contains("ok: "), "\(verified.stdout) \(verified.stderr)")
        }
    }
}
