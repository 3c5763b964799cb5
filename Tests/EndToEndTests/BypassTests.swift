import BordergateAudit
import Foundation
import Testing

/// The bypass suite: an unprivileged tool (`nobody`, or root where the finding needs it) in a
/// guarded cgroup tries a way out, and the test asserts what reached the forbidden test host
/// (a capture on its interface), not what the tool printed. Each test also runs the same attempt
/// unguarded, so a capture that saw nothing proves the guard held, not that the capture was blind.
extension EndToEnd {
    static let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups"

    /// Records every frame on the test host's interface that carries `marker` in its payload, as
    /// one line per frame ("v4 DST" or "v6 DST NEXTHDR"), while `body` runs.
    func capturing(_ marker: String, _ body: () throws -> Void) throws -> [String] {
        let out = NSTemporaryDirectory() + "bge2e-capture-\(getpid())-\(UUID().uuidString)"
        let script = """
            import socket, struct, sys
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
            s.bind(('\(Harness.netName.prefix(8))-n', 0))
            s.settimeout(0.2)
            out = open('\(out)', 'a', buffering=1)
            print('ready', file=out)
            while True:
                try:
                    frame = s.recv(65535)
                except socket.timeout:
                    continue
                if b'\(marker)' not in frame:
                    continue
                kind = struct.unpack('!H', frame[12:14])[0]
                if kind == 0x0800:
                    print('v4', socket.inet_ntop(socket.AF_INET, frame[30:34]), file=out)
                elif kind == 0x86dd:
                    print('v6', socket.inet_ntop(socket.AF_INET6, frame[38:54]), frame[20], file=out)
            """
        let path = out + ".py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path); unlink(out) }
        let pid = try #require(Harness.spawn(["/usr/sbin/ip", "netns", "exec", Harness.netName, "python3", path],
                                             stdout: out + ".log", stderr: out + ".log"))
        defer { kill(pid, SIGKILL); _ = Harness.wait(pid, timeout: 5); unlink(out + ".log") }
        for _ in 0..<100 where !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").hasPrefix("ready") { usleep(20_000) }
        try body()
        usleep(300_000) // frames in flight
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        try #require(lines.first == "ready", "the capture on the test host did not start: \((try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? "")")
        return Array(lines.dropFirst())
    }

    /// Runs a Python script as `nobody` (or root), inside the cgroup `rel` or, with nil, outside every guard.
    func runPython(_ script: String, inCgroup rel: String?, asNobody: Bool, prefix: String = "") throws -> Harness.ShellResult {
        let path = NSTemporaryDirectory() + "bge2e-bypass-\(getpid())-\(UUID().uuidString).py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        defer { unlink(path) }
        // the system's python: one under /root (pyenv) is out of nobody's reach
        let command = (asNobody ? Self.nobody + " " : "") + prefix + "/usr/bin/python3 " + path
        return Harness.sh(rel.map { Harness.inCgroup($0, command) } ?? command)
    }

    /// Whether this kernel loads BPF LSM programs (some build without trampolines or the BPF LSM).
    static let kernelHasBPFLSM: Bool = {
        Harness.sh("bpftool feature probe kernel 2>/dev/null").stdout.contains("eBPF program_type lsm is available")
    }()

    @Test func packetXDPAndVsockSocketsAreRefusedAtCreation() throws {
        // Finding 6: root in a guarded cgroup hand-builds a UDP frame to the forbidden host and
        // sends it on the host's side of the test link with an AF_PACKET socket. The refusal is a
        // BPF LSM hook: on a kernel without BPF LSM programs the daemon says it cannot refuse
        // them, and an unprivileged tool still cannot (packet sockets need CAP_NET_RAW).
        try withPolicy("bypass-packet", policy: "eu-only") { d, cg in
            let link = String(Harness.netName.prefix(8))
            let mac = { (args: String) in
                Harness.sh("ip \(args) -j link show | python3 -c \"import json,sys; print([l['address'] for l in json.load(sys.stdin) if l['ifname']=='\(link)-' + sys.argv[1]][0])\" \(args.isEmpty ? "h" : "n")")
                    .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let hostMAC = mac(""), hostTarget = mac("-n \(Harness.netName)")
            try #require(hostMAC.count == 17 && hostTarget.count == 17, "no MAC addresses of the test link: \(hostMAC) \(hostTarget)")
            func frame(_ marker: String) -> String {
                """
                import errno, socket, struct
                def made(family, kind, proto=0):
                    try:
                        socket.socket(family, kind, proto).close(); return 'created'
                    except PermissionError as e:
                        return errno.errorcode.get(e.errno, str(e))
                    except OSError as e:
                        return 'unsupported'
                def mac(text): return bytes(int(x, 16) for x in text.split(':'))
                def checksum(b):
                    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
                    while s >> 16: s = (s & 0xffff) + (s >> 16)
                    return ~s & 0xffff
                payload = b'\(marker)'
                udp = struct.pack('!HHHH', 40000, 9, 8 + len(payload), 0) + payload
                ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                                 socket.inet_aton('\(Harness.local4)'), socket.inet_aton('\(Harness.usHost4)'))
                ip = ip[:10] + struct.pack('!H', checksum(ip)) + ip[12:]
                try:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                    s.bind(('\(link)-h', 0))
                    s.send(mac('\(hostTarget)') + mac('\(hostMAC)') + b'\\x08\\x00' + ip + udp)
                    print('packet sent')
                except PermissionError as e:
                    print('packet', errno.errorcode.get(e.errno, str(e)))
                print('xdp', made(44, socket.SOCK_RAW))
                print('vsock', made(40, socket.SOCK_STREAM))
                """
            }
            var control = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let unguarded = try capturing("BGLEAK-CONTROL") {
                control = try runPython(frame("BGLEAK-CONTROL"), inCgroup: nil, asNobody: false)
            }
            #expect(control.stdout.contains("packet sent"), "\(control.stdout) \(control.stderr)")
            try #require(unguarded.contains("v4 \(Harness.usHost4)"), "the capture must see an unguarded frame: \(unguarded)")
            let controlLines = control.stdout.split(separator: "\n").map(String.init)

            // nobody, guarded: no frame of its own reaches the forbidden host, whatever the kernel
            var nobody = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let seenNobody = try capturing("BGLEAK-NOBODY") {
                nobody = try runPython(frame("BGLEAK-NOBODY"), inCgroup: cg, asNobody: true)
            }
            #expect(seenNobody.isEmpty, "nobody's hand-built frame reached the forbidden host: \(seenNobody)")
            #expect(nobody.stdout.hasPrefix("packet EPERM"), "\(nobody.stdout) \(nobody.stderr)")

            guard Self.kernelHasBPFLSM else {
                #expect(d.daemonLog.contains("packet, XDP and vsock sockets are not refused"),
                        "a kernel without BPF LSM programs is named in the daemon's log")
                return
            }
            var guarded = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let seen = try capturing("BGLEAK-GUARDED") {
                guarded = try runPython(frame("BGLEAK-GUARDED"), inCgroup: cg, asNobody: false)
            }
            #expect(seen.isEmpty, "root's hand-built frame reached the forbidden host: \(seen)")
            let lines = guarded.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "packet EPERM", "\(guarded.stdout) \(guarded.stderr)")
            // XDP and vsock sockets: refused, unless this kernel has no such family at all
            for (i, family) in ["xdp", "vsock"].enumerated() where controlLines.count > i + 1 {
                let expected = controlLines[i + 1] == "\(family) unsupported" ? "\(family) unsupported" : "\(family) EPERM"
                #expect(lines.count > i + 1 && lines[i + 1] == expected, "\(lines) (unguarded: \(controlLines))")
            }
        }
    }

    @Test func aGuardedProcessCannotBindTheProxyPortEvenWhileNoDaemonListens() throws {
        // Finding 4: after kill -9 of the daemon, a guarded nobody bound the proxy port and was
        // handed the next redirected connections; the restarted daemon could not listen.
        try withOwnDaemon("bypass-bind", port: 17_420) { d, cg in
            d.stop(signal: SIGKILL)
            let script = """
                import errno, socket
                for family, addr in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1'), (socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::'), (socket.AF_INET6, '::ffff:127.0.0.1')):
                    s = socket.socket(family, socket.SOCK_STREAM)
                    try:
                        s.bind((addr, 17420)); s.listen(); print(addr, 'bound')
                    except OSError as e:
                        print(addr, errno.errorcode.get(e.errno, str(e)))
                    s.close()
                """
            let free = try runPython(script, inCgroup: nil, asNobody: true)
            #expect(free.stdout.split(separator: "\n").filter { $0.hasSuffix(" bound") }.count >= 2,
                    "unguarded, nobody can bind the free port (the test's premise): \(free.stdout) \(free.stderr)")
            let held = try runPython(script, inCgroup: cg, asNobody: true)
            let lines = held.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 5 && lines.allSatisfy { $0.hasSuffix(" EPERM") }, "\(held.stdout) \(held.stderr)")
            // the port stayed free: the next daemon listens and relays
            try d.start()
            let r = Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 10 http://\(Harness.host4)/"))
            #expect(r.stdout.contains("hello from the test host"), "\(r.stderr)")
        }
    }

    @Test func aRedirectGoesOnlyToTheProxysOwnListener() throws {
        // Finding 4, the other half: a process outside the guard that took the port (here a
        // nobody, on a port above 1024) is not handed the redirected connections.
        try withOwnDaemon("bypass-squat", port: 17_421) { d, cg in
            d.stop(signal: SIGKILL)
            let squatter = NSTemporaryDirectory() + "bge2e-squatter-\(getpid()).py"
            let got = squatter + ".out"
            try """
                import socket
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(('127.0.0.1', 17421)); s.listen()
                out = open('\(got)', 'a', buffering=1); print('listening', file=out)
                while True:
                    c, _ = s.accept(); print('accepted', file=out)
                """.write(toFile: squatter, atomically: true, encoding: .utf8)
            chmod(squatter, 0o644)
            defer { unlink(squatter); unlink(got) }
            let pid = try #require(Harness.spawn(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", squatter],
                                                 stdout: "/dev/null", stderr: "/dev/null"))
            defer { kill(pid, SIGKILL); _ = Harness.wait(pid, timeout: 5) }
            for _ in 0..<100 where !((try? String(contentsOfFile: got, encoding: .utf8)) ?? "").hasPrefix("listening") { usleep(20_000) }
            let script = "import socket, errno\ntry:\n  socket.create_connection(('\(Harness.host4)', 80), 5); print('connected')\nexcept OSError as e:\n  print(errno.errorcode.get(e.errno))"
            let r = try runPython(script, inCgroup: cg, asNobody: true)
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "EPERM", "\(r.stdout) \(r.stderr)")
            let lines = ((try? String(contentsOfFile: got, encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(lines == ["listening"], "the squatter was handed a redirected connection: \(lines)")
            kill(pid, SIGKILL)
            _ = Harness.wait(pid, timeout: 5)
            try d.start() // reports the refusal from the kernel's ring buffer
            let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
            let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
            #expect(deny.reason?.contains("not Bordergate's proxy") == true, "\(deny.reason ?? "")")
        }
    }

    @Test func routingHeadersAndIPOptionsAreRefusedAndNoPacketTakesTheDetour() throws {
        // Finding 1: a routing header sends an allowed destination's packets through a forbidden
        // host first; the verdict hooks only see the named destination.
        try withPolicy("bypass-rthdr", policy: "eu-only") { _, cg in
            func script(_ marker: String) -> String {
                """
                import errno, socket, struct
                def attempt(f):
                    try:
                        f(); return 'set'
                    except PermissionError as e:
                        return errno.errorcode.get(e.errno, str(e))
                    except OSError as e:
                        return 'invalid ' + str(e)
                # a segment routing header (type 4): the forbidden host first, then the allowed one
                segments = [socket.inet_pton(socket.AF_INET6, a) for a in ('\(Harness.host6)', '\(Harness.usHost6)')]
                srh = struct.pack('!BBBBBBH', 0, 2 * len(segments), 4, len(segments) - 1, len(segments) - 1, 0, 0) + b''.join(segments)
                u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                print('rthdr', attempt(lambda: u.setsockopt(socket.IPPROTO_IPV6, 57, srh)))
                print('2292rthdr', attempt(lambda: u.setsockopt(socket.IPPROTO_IPV6, 5, srh)))
                try:
                    u.sendto(b'\(marker)', ('\(Harness.host6)', 9)); print('sent')
                except OSError as e:
                    print('send', errno.errorcode.get(e.errno, str(e)))
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                lsrr = bytes([1, 131, 7, 4]) + socket.inet_aton('\(Harness.usHost4)')  # NOP, LSRR via the forbidden host
                print('ip_options', attempt(lambda: t.setsockopt(socket.IPPROTO_IP, 4, lsrr)))
                """
            }
            var control = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let unguarded = try capturing("BGRTHDR-CONTROL") {
                control = try runPython(script("BGRTHDR-CONTROL"), inCgroup: nil, asNobody: true)
            }
            #expect(control.stdout.hasPrefix("rthdr set"), "unguarded, nobody may set a routing header (the test's premise): \(control.stdout) \(control.stderr)")
            try #require(unguarded.contains { $0.hasPrefix("v6 \(Harness.usHost6) 43") },
                         "the capture must see the unguarded datagram go to the forbidden host first: \(unguarded)")

            var guarded = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let seen = try capturing("BGRTHDR-GUARDED") {
                guarded = try runPython(script("BGRTHDR-GUARDED"), inCgroup: cg, asNobody: true)
            }
            let lines = guarded.stdout.split(separator: "\n").map(String.init)
            #expect(lines == ["rthdr EPERM", "2292rthdr EPERM", "sent", "ip_options EPERM"], "\(guarded.stdout) \(guarded.stderr)")
            #expect(!seen.contains { $0.contains(Harness.usHost6) }, "a datagram went to the forbidden host: \(seen)")
            #expect(seen.contains("v6 \(Harness.host6) 17"), "the datagram went straight to the allowed host: \(seen)")
        }
    }

    @Test func sourceRoutesInSendmsgControlDataAreDroppedAtEgress() throws {
        // The setsockopt hook cannot see a source route passed per datagram as sendmsg control
        // data (IP_RETOPTS; IPV6_RTHDR of type 2 where the kernel has Mobile IPv6): the egress
        // hook drops the packet. The kernel lets only CAP_NET_RAW set IPv4 source routes, so the
        // sender is root in the guarded cgroup (root happens: a build step run as root).
        try withPolicy("bypass-cmsg", policy: "eu-only") { d, cg in
            func script(_ marker: String) -> String {
                """
                import errno, socket, struct
                rh2 = struct.pack('!BBBBI', 0, 2, 2, 1, 0) + socket.inet_pton(socket.AF_INET6, '\(Harness.usHost6)')
                u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                try:
                    u.sendmsg([b'\(marker)'], [(socket.IPPROTO_IPV6, 57, rh2)], 0, ('\(Harness.host6)', 9)); print('v6 sent')
                except OSError as e:
                    print('v6', errno.errorcode.get(e.errno, str(e)))
                v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                lsrr = bytes([1, 131, 7, 4]) + socket.inet_aton('\(Harness.usHost4)')  # NOP, LSRR via the forbidden host
                try:
                    v4.sendmsg([b'\(marker)'], [(socket.IPPROTO_IP, 7, lsrr)], 0, ('\(Harness.host4)', 9)); print('v4 sent')
                except OSError as e:
                    print('v4', errno.errorcode.get(e.errno, str(e)))
                """
            }
            var control = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let unguarded = try capturing("BGCMSG-CONTROL") {
                control = try runPython(script("BGCMSG-CONTROL"), inCgroup: nil, asNobody: false)
            }
            let controlLines = control.stdout.split(separator: "\n").map(String.init)
            #expect(controlLines.last == "v4 sent", "unguarded, root may send an IPv4 source route (the test's premise): \(control.stdout) \(control.stderr)")
            try #require(unguarded.contains("v4 \(Harness.usHost4)"),
                         "the capture must see the unguarded datagram go to the forbidden host first: \(unguarded)")
            // without Mobile IPv6 the kernel refuses the type 2 header itself (EINVAL)
            let v6Possible = controlLines.first == "v6 sent"

            var guarded = Harness.ShellResult(status: 0, stdout: "", stderr: "")
            let seen = try capturing("BGCMSG-GUARDED") {
                guarded = try runPython(script("BGCMSG-GUARDED"), inCgroup: cg, asNobody: false)
            }
            let lines = guarded.stdout.split(separator: "\n").map(String.init)
            #expect(lines == [v6Possible ? "v6 EPERM" : controlLines.first ?? "?", "v4 EPERM"], "\(guarded.stdout) \(guarded.stderr)")
            #expect(!seen.contains { $0.contains(Harness.usHost4) || $0.contains(Harness.usHost6) }, "a source-routed datagram left the host: \(seen)")
            let events = d.waitForEvents { all in all.contains { $0.reason == "source-routed packets dropped" } }
            let dropped = events.filter { $0.reason == "source-routed packets dropped" }.compactMap(\.count).reduce(0, +)
            #expect(dropped >= (v6Possible ? 2 : 1), "the drops are reported: \(dropped)")
        }
    }

    @Test func aRedirectInAnotherNetworkNamespaceIsRefused() throws {
        // Finding 3: in `unshare -Urn` the redirect went to that namespace's 127.0.0.1, where the
        // tool's own fake proxy listened, and sockops recorded it for the real proxy.
        try withUserNamespaces {
            try withGuardedCgroup("bypass-netns") { d, cg in
                // The fake proxy is bound before the tool joins the guarded cgroup (inside it,
                // bind4 refuses the proxy's port in every namespace): then the tool is moved in.
                let path = NSTemporaryDirectory() + "bge2e-netns-\(getpid()).py"
                let out = path + ".out"
                try """
                    import errno, os, socket, subprocess, time
                    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
                    fake = socket.socket(); fake.bind(('127.0.0.1', \(d.port))); fake.listen(); fake.settimeout(1)
                    print(os.getpid(), flush=True)
                    while '\(cg)' not in open('/proc/self/cgroup').read(): time.sleep(0.02)
                    try:
                        socket.create_connection(('\(Harness.host4)', 80), timeout=5); print('connected', flush=True)
                    except OSError as e:
                        print(errno.errorcode.get(e.errno, str(e)), flush=True)
                    try:
                        fake.accept(); print('the fake proxy got it', flush=True)
                    except socket.timeout:
                        print('the fake proxy got nothing', flush=True)
                    """.write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o644)
                defer { unlink(path); unlink(out); unlink(out + ".err") }
                let pid = try #require(Harness.spawn(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                                      "/usr/bin/unshare", "-Urn", "/usr/bin/python3", path], stdout: out, stderr: out + ".err"))
                var lines: [String] = []
                for _ in 0..<250 {
                    lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                    if !lines.isEmpty { break }
                    usleep(20_000)
                }
                try #require(lines.first == "\(pid)", "the tool did not start: \((try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? "")")
                try "\(pid)".write(toFile: Harness.cgroupRoot + cg + "/cgroup.procs", atomically: false, encoding: .utf8)
                _ = Harness.wait(pid, timeout: 30)
                lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                #expect(Array(lines.dropFirst()) == ["EPERM", "the fake proxy got nothing"],
                        "\(lines) \((try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? "")")
                let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
                let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
                #expect(deny.reason?.contains("network namespace") == true, "\(deny.reason ?? "")")
                #expect(deny.process?.uid == 65534, "\(String(describing: deny.process))")
                // the same tool in the proxy's namespace is still relayed
                let ok = Harness.sh(Harness.inCgroup(cg, "\(Self.nobody) curl -sS --max-time 10 http://\(Harness.host4)/"))
                #expect(ok.stdout.contains("hello from the test host"), "\(ok.stderr)")
            }
        }
    }

    /// Unprivileged user namespaces, as on most hosts: turned on for `body` if this one has them off.
    func withUserNamespaces(_ body: () throws -> Void) throws {
        var restore: [(String, String)] = []
        for (path, wanted) in [("/proc/sys/kernel/unprivileged_userns_clone", "1"), ("/proc/sys/user/max_user_namespaces", "1000"),
                               ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0")] {
            guard let old = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else { continue }
            let off = path.hasSuffix("max_user_namespaces") ? old == "0" : old != wanted
            guard off else { continue }
            try wanted.write(toFile: path, atomically: false, encoding: .utf8)
            restore.append((path, old))
        }
        defer { for (path, old) in restore { try? old.write(toFile: path, atomically: false, encoding: .utf8) } }
        try body()
    }
}
