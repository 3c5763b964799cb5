import BordergateAudit
import Foundation
import Testing

/// Kernel-facing tests share cgroups, bpffs pins, a network namespace and ports: they run one at a
/// time, against one daemon where they can.
@Suite(.serialized) struct EndToEnd {
    /// One daemon for the tests that do not stop it.
    static let shared = startShared("shared", port: 17_401)

    /// A daemon kept for the whole run (several suites share one each), torn down at exit.
    static func startShared(_ name: String, port: Int, config: String = DaemonFixture.builtInConfig,
                            files: [String: String] = [:]) -> Result<DaemonFixture, HarnessError> {
        do {
            try Harness.requireEnvironment()
            let d = DaemonFixture(name, port: port, config: config, files: files)
            d.cli("detach --all")
            try d.start()
            if sharedForExit.isEmpty { atexit { EndToEnd.sharedForExit.forEach { $0.tearDown() } } }
            sharedForExit.append(d)
            return .success(d)
        } catch let e as HarnessError {
            return .failure(e)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }
    nonisolated(unsafe) static var sharedForExit: [DaemonFixture] = []

    /// A cgroup guarded by `daemon` (with `policy`, or the default), removed afterwards.
    func withGuardedCgroup(_ name: String, on daemon: Result<DaemonFixture, HarnessError> = EndToEnd.shared, policy: String? = nil,
                           _ body: (DaemonFixture, String) throws -> Void) throws {
        let d = try daemon.get()
        let cg = try Harness.makeCgroup(name)
        defer {
            d.cli("detach \(cg)")
            Harness.removeCgroup(cg)
        }
        let r = d.cli("attach \(cg)" + (policy.map { " --policy \($0)" } ?? ""))
        try #require(r.status == 0, "attach failed: \(r.stderr)")
        if let policy { #expect(r.stdout.contains("policy \(policy)")) }
        try body(d, cg)
    }

    @Test func curlIsRelayedAndAttributed() throws {
        try withGuardedCgroup("curl") { d, cg in
            let r = Harness.sh(Harness.inCgroup(cg, "curl -sS http://\(Harness.host4)/peer"))
            #expect(r.status == 0, "curl failed: \(r.stderr)")
            // the test host saw the proxy's upstream dial from this host, not a loopback address
            #expect(r.stdout.contains(Harness.local4))
            let events = d.waitForEvents { all in all.connects(comm: "curl").contains { c in c.process?.cgroup == cg && all.close(of: c) != nil } }
            let connect = try #require(events.connects(comm: "curl").last { $0.process?.cgroup == cg })
            #expect(connect.verdict == .redirect)
            #expect(connect.process?.exe == "/usr/bin/curl")
            #expect(connect.destination?.ip == Harness.host4)
            #expect(connect.destination?.port == 80)
            let close = try #require(events.close(of: connect))
            #expect((close.bytes?.sent ?? 0) > 50, "the request went through the proxy")
            #expect((close.bytes?.received ?? 0) > 100, "the response came back through the proxy")
            #expect(close.duration_ms != nil)
        }
    }

    @Test func aChildOfAShellIsNamedByItsExecutableAndParent() throws {
        try withGuardedCgroup("child") { d, cg in
            let r = Harness.sh(Harness.inCgroup(cg, "bash -c 'echo $$; curl -sS -o /dev/null http://\(Harness.host4)/; exit $?'"))
            #expect(r.status == 0, "\(r.stderr)")
            let shellPID = try #require(Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            let events = d.waitForEvents { !$0.connects(comm: "curl").filter { $0.process?.ppid == shellPID }.isEmpty }
            let connect = try #require(events.connects(comm: "curl").first { $0.process?.ppid == shellPID },
                                       "no curl connect with parent \(shellPID)")
            #expect(connect.process?.exe == "/usr/bin/curl")
            #expect(connect.process?.cgroup == cg)
        }
    }

    @Test func aProcessThatExitsAtOnceIsStillNamed() throws {
        try withGuardedCgroup("quick") { d, cg in
            // connect and exit without waiting for the reply
            let script = "import socket; s=socket.create_connection(('\(Harness.host4)', 7)); s.close()"
            let r = Harness.sh(Harness.inCgroup(cg, "python3 -c \"\(script)\""))
            #expect(r.status == 0, "\(r.stderr)")
            let events = d.waitForEvents { $0.connects(comm: "python3").contains { $0.process?.cgroup == cg } }
            let connect = try #require(events.connects(comm: "python3").first { $0.process?.cgroup == cg })
            #expect(connect.process?.exe?.contains("python3") == true, "exe: \(connect.process?.exe ?? "nil")")
            #expect(connect.process?.ppid != nil)
        }
    }

    @Test func aProcessThatExecsAnotherProgramIsNamedByTheNewOne() throws {
        // The proxy remembers who a process is for its next connections; an exec must end that.
        // Same process id, same comm, same cgroup and user: only the executable differs.
        try withGuardedCgroup("reexec") { d, cg in
            let dir = NSTemporaryDirectory() + "bge2e-reexec-\(getpid())"
            try Harness.withRenamedPython(in: dir) { other in
                // an answer through the proxy: the connection was placed (and its process described)
                // before the exec
                let connect = "import socket; s=socket.create_connection(('\(Harness.host4)', 7)); s.sendall(b'x'); s.shutdown(socket.SHUT_WR); assert s.recv(64); s.close()"
                let script = "\(dir)/reexec.py"
                try "\(connect)\nimport os\nos.execv('\(other)', ['python3', '-c', \"\(connect)\"])\n"
                    .write(toFile: script, atomically: true, encoding: .utf8)
                let r = Harness.sh(Harness.inCgroup(cg, "exec /usr/bin/python3 \(script)"))
                #expect(r.status == 0, "\(r.stderr)")
                let events = d.waitForEvents { $0.connects(comm: "python3").filter { $0.process?.cgroup == cg }.count >= 2 }
                let connects = events.connects(comm: "python3").filter { $0.process?.cgroup == cg }
                try #require(connects.count == 2, "\(connects.count) connects")
                #expect(connects[0].process?.pid == connects[1].process?.pid)
                #expect(connects[0].process?.exe == "/usr/bin/python3")
                #expect(connects[1].process?.exe == other)
            }
        }
    }

    @Test func fiftyMegabytesEachWayArriveIdentical() throws {
        try withGuardedCgroup("bulk") { d, cg in
            let size = 50 * 1024 * 1024
            let dir = NSTemporaryDirectory() + "bge2e-bulk-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // expected download: the server's pattern, made locally
            Harness.sh("python3 -c \"import sys; b=bytes(range(256))*256; n=\(size); f=open('\(dir)/expected','wb')\nwhile n>0: t=min(n,len(b)); f.write(b[:t]); n-=t\"")
            let down = Harness.sh(Harness.inCgroup(cg, "curl -sS -o \(dir)/got http://\(Harness.host4)/bytes/\(size)"))
            #expect(down.status == 0, "\(down.stderr)")
            #expect(Harness.sha256("\(dir)/got") == Harness.sha256("\(dir)/expected"))

            Harness.sh("head -c \(size) /dev/urandom > \(dir)/upload")
            let up = Harness.sh(Harness.inCgroup(cg, "curl -sS --data-binary @\(dir)/upload -H 'Content-Type: application/octet-stream' http://\(Harness.host4)/sha256"))
            #expect(up.status == 0, "\(up.stderr)")
            #expect(up.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == Harness.sha256("\(dir)/upload"))

            let events = d.waitForEvents { e in e.filter { $0.type == .close && $0.process?.cgroup == cg }.count >= 2 }
            let closes = events.filter { $0.type == .close && $0.process?.cgroup == cg }
            #expect(closes.contains { ($0.bytes?.received ?? 0) >= UInt64(size) })
            #expect(closes.contains { ($0.bytes?.sent ?? 0) >= UInt64(size) })
        }
    }

    @Test func halfCloseCarriesTheReplyAfterTheClientsEOF() throws {
        try withGuardedCgroup("halfclose") { _, cg in
            let script = """
            import hashlib, socket
            data = bytes(range(256)) * 4096
            s = socket.create_connection(('\(Harness.host4)', 7))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = b''
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                reply += chunk
            print(reply.decode().strip() == f'{hashlib.sha256(data).hexdigest()} {len(data)}')
            """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "True", "\(r.stdout) \(r.stderr)")
        }
    }

    @Test func ipv6AndIPv4MappedAreInterceptedAndGetpeernameShowsTheOriginalPeer() throws {
        try withGuardedCgroup("v6") { d, cg in
            let script = """
            import socket
            for family, addr in ((socket.AF_INET, '\(Harness.host4)'), (socket.AF_INET6, '\(Harness.host6)'), (socket.AF_INET6, '::ffff:\(Harness.host4)')):
                s = socket.socket(family, socket.SOCK_STREAM)
                s.connect((addr, 80))
                peer = s.getpeername()
                s.sendall(b'GET /peer HTTP/1.0\\r\\n\\r\\n')
                body = b''
                while True:
                    c = s.recv(4096)
                    if not c: break
                    body += c
                print(addr, peer[0], peer[1], body.split(b'\\r\\n\\r\\n', 1)[1].decode().strip())
            """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.status == 0, "\(r.stderr)")
            let lines = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            try #require(lines.count == 3, "\(r.stdout)")
            for l in lines {
                #expect(l[1] == l[0], "getpeername() shows the original peer \(l[0]), not the proxy: \(l)")
                #expect(l[2] == "80")
                #expect(!l[3].contains("127.0.0.1") && !l[3].hasPrefix("::1"), "the server saw the host, not loopback: \(l)")
            }
            let events = d.waitForEvents { $0.filter { $0.type == .close && $0.process?.cgroup == cg }.count >= 3 }
            let dests = Set(events.connects(comm: "python3").filter { $0.process?.cgroup == cg }.compactMap { $0.destination?.ip })
            #expect(dests == [Harness.host4, Harness.host6], "IPv4-mapped is reported as the IPv4 address it is")
        }
    }

    @Test func twoHundredConcurrentConnectionsAllComplete() throws {
        try withGuardedCgroup("many") { d, cg in
            let script = """
            import concurrent.futures, socket
            def one(i):
                s = socket.create_connection(('\(Harness.host4)', 80), timeout=30)
                s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
                body = b''
                while True:
                    c = s.recv(4096)
                    if not c: break
                    body += c
                return b'hello from the test host' in body
            socks = []
            with concurrent.futures.ThreadPoolExecutor(200) as ex:
                print(sum(ex.map(one, range(200))))
            """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "200", "\(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { $0.filter { $0.type == .close && $0.process?.cgroup == cg }.count >= 200 }
            #expect(events.filter { $0.type == .connect && $0.process?.cgroup == cg }.count == 200)
            #expect(events.filter { $0.type == .close && $0.process?.cgroup == cg }.count == 200)
        }
    }

    @Test func anUpstreamThatRefusesIsAResetWithAReason() throws {
        try withGuardedCgroup("refused") { d, cg in
            // The tool's connect to the proxy completes before the upstream refuses, so it sees a
            // reset; when the reset lands before the tool looks (curl says "Couldn't connect") or
            // after its request, the errno is the same. Python shows which errno it was.
            let script = """
            import socket
            try:
                s = socket.create_connection(('\(Harness.host4)', 81), timeout=10)
                s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
                print('eof' if s.recv(4096) == b'' else 'data')
            except ConnectionResetError:
                print('reset')
            except Exception as e:  # named, so a failure says what the tool saw instead
                print(type(e).__name__, e)
            """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "reset", "\(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { $0.contains { $0.type == .close && $0.process?.cgroup == cg } }
            let close = try #require(events.first { $0.type == .close && $0.process?.cgroup == cg })
            #expect(close.end == .upstreamFailed)
            #expect(close.error?.contains("refused") == true, "\(close.error ?? "nil")")
        }
    }

    @Test func aClientPortThatComesRoundBeforeTheProxyAcceptedIsNotMistakenForTheEarlierConnection() throws {
        // The proxy finds a connection's record by the client's address and port. A reset frees
        // the port at once, so a proxy that falls behind can meet it again while the connection
        // that held it still waits unaccepted: the earlier one must not be relayed as the later
        // one (its bytes to the later one's destination), and neither may go unrecorded.
        try withGuardedCgroup("port-reuse") { d, cg in
            let pid = try #require(d.pid)
            let script = Harness.pythonTalk + """
                import os, signal, struct
                a = socket.socket()
                # A port connect() picks may also be held in TIME_WAIT towards another address,
                # and that blocks b's bind below; bind(0) picks a port nothing else holds.
                a.bind(('0.0.0.0', 0))
                a.connect(('\(Harness.host4)', 80))  # waits in the stopped proxy's backlog
                port = a.getsockname()[1]
                a.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
                a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                a.close()  # a reset: the port is free again, the connection still unaccepted
                b = socket.socket()
                b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                b.bind(('0.0.0.0', port))
                b.connect(('\(Harness.host4)', 7))
                print('same port' if b.getsockname()[1] == port else 'another port', flush=True)
                os.kill(\(pid), signal.SIGCONT)
                talk(b)
                """
            kill(pid, SIGSTOP)
            defer { kill(pid, SIGCONT) }
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.split(separator: "\n") == ["same port", "reset"], "\(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.connects().filter { $0.process?.cgroup == cg }.count >= 2 }
            let mine = events.connects().filter { $0.process?.cgroup == cg }
            let earlier = try #require(mine.first { $0.destination?.port == 80 }, "the earlier connection went unrecorded")
            let later = try #require(mine.first { $0.destination?.port == 7 }, "the later connection went unrecorded")
            #expect(earlier.verdict == .deny && earlier.reason?.contains("a later connection from the same client address and port") == true,
                    "\(earlier.verdict?.rawValue ?? "") \(earlier.reason ?? "")")
            #expect(later.verdict == .deny && later.reason?.contains("an earlier connection from the same client address and port") == true,
                    "\(later.verdict?.rawValue ?? "") \(later.reason ?? "")")
            #expect(!mine.contains { $0.verdict == .redirect }, "relayed under a record that may not be its own")
            #expect(mine.count == 2, "one event per connection: \(mine.map { "\($0.destination?.port ?? 0) \($0.verdict?.rawValue ?? "")" })")
        }
    }

    @Test func perSocketMapsAreCleanedUp() throws {
        try withGuardedCgroup("cleanup") { d, cg in
            let r = Harness.sh(Harness.inCgroup(cg, "for i in $(seq 20); do curl -sS -o /dev/null http://\(Harness.host4)/; done"))
            #expect(r.status == 0)
            _ = d.waitForEvents { $0.filter { $0.type == .close && $0.process?.cgroup == cg }.count >= 20 }
            // the proxy claimed every tuple entry (sock_state is socket-local: it goes with the socket)
            for map in ["orig_by_tuple"] {
                let dump = Harness.sh("bpftool -j map dump pinned \(d.pinRoot)/maps/\(map)")
                #expect(dump.status == 0, "\(dump.stderr)")
                #expect(dump.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "\(map) still holds entries: \(dump.stdout.prefix(200))")
            }
        }
    }

    @Test func detachStopsInterception() throws {
        let d = try Self.shared.get()
        let cg = try Harness.makeCgroup("detach")
        defer { Harness.removeCgroup(cg) }
        #expect(d.cli("attach \(cg)").status == 0)
        #expect(d.cli("status").stdout.contains(cg))
        let r = d.cli("detach \(cg)")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!d.cli("status").stdout.contains(cg))
        let curl = Harness.sh(Harness.inCgroup(cg, "curl -sS http://\(Harness.host4)/"))
        #expect(curl.status == 0)
        usleep(300_000)
        let after = d.events().connects().filter { e in e.process?.cgroup == cg }
        #expect(after.isEmpty, "no interception after detach")
    }

    @Test func eventsFollowStreamsLiveAndFiltersAsAsked() throws {
        try withGuardedCgroup("follow") { d, cg in
            let out = NSTemporaryDirectory() + "bge2e-follow-\(getpid()).out"
            var env = d.environment
            env["BORDERGATE_LOG_LEVEL"] = "error"
            let follower = try #require(Harness.spawn([Harness.binary, "events", "-f", "-o", "json", "--cgroup", cg],
                                                      environment: env, stdout: out, stderr: out + ".err"))
            defer {
                kill(follower, SIGTERM)
                _ = Harness.wait(follower, timeout: 10)
                try? FileManager.default.removeItem(atPath: out)
                try? FileManager.default.removeItem(atPath: out + ".err")
            }
            usleep(500_000)
            Harness.sh(Harness.inCgroup(cg, "curl -sS -o /dev/null http://\(Harness.host4)/"))
            Harness.sh("curl -sS -o /dev/null http://\(Harness.host4)/") // unguarded: not in the stream
            var lines: [String] = []
            for _ in 0..<100 {
                lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                if lines.count >= 2 { break }
                usleep(50_000)
            }
            var st: Int32 = 0
            #expect(waitpid(follower, &st, WNOHANG) == 0, "-f keeps streaming")
            let decoded = lines.compactMap { try? AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data($0.utf8)) }
            #expect(decoded.count == lines.count, "every line is one JSON event")
            #expect(decoded.map(\.type) == [.connect, .close], "\(lines)")
            #expect(decoded.allSatisfy { $0.process?.cgroup == cg })
        }
    }

    @Test func theProxysSocketMarkAloneExemptsNothing() throws {
        try withGuardedCgroup("mark") { d, cg in
            // a guarded root process that copies the proxy's SO_MARK is still intercepted
            let script = """
            import socket
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, 36, 0x42470001)  # SO_MARK
            s.connect(('\(Harness.host4)', 80))
            s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
            print(len(s.recv(4096)) > 0)
            """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.contains("True"), "\(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { !$0.connects(comm: "python3").filter { e in e.process?.cgroup == cg }.isEmpty }
            let seen = events.connects(comm: "python3").filter { e in e.process?.cgroup == cg }
            #expect(seen.count == 1, "the marked connection went through the proxy and was recorded")
        }
    }

    @Test func theLoopGuardLeavesTheProxysOwnDialsAlone() throws {
        // Put the daemon itself in a guarded cgroup: its upstream dials must still go direct.
        let d = DaemonFixture("loop", port: 17_402)
        defer { d.tearDown() }
        try d.start()
        let cg = try Harness.makeCgroup("loop")
        defer {
            if let pid = d.pid {
                try? "\(pid)".write(toFile: Harness.cgroupRoot + "/cgroup.procs", atomically: false, encoding: .utf8)
            }
            Harness.removeCgroup(cg)
        }
        #expect(d.cli("attach \(cg)").status == 0)
        let pid = try #require(d.pid)
        try "\(pid)".write(toFile: Harness.cgroupRoot + cg + "/cgroup.procs", atomically: false, encoding: .utf8)
        let r = Harness.sh(Harness.inCgroup(cg, "curl -sS -m 10 http://\(Harness.host4)/"))
        #expect(r.stdout.contains("hello from the test host"), "\(r.stderr)")
        let status = d.cli("status").stdout
        #expect(status.contains("loop_guard=1"), "\(status)")
    }
}
