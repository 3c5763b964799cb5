import BordergateAudit
import Foundation
import Testing

/// What the test host serves on /pii.* (scripts/testhost_server.py, PII): none of it may reach a
/// tool under a masking policy, nor the daemon's state directory.
let servedPII = [
    "ada.lovelace@example.org", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
    "correct horse battery staple", "s3cr3t-cookie-value-42",
]

let maskingConfig = """
    maskers:
      order-id: 'ORD-[0-9]{8}-[0-9]{4}'
    policies:
      default:
        inspect: all
        unknown: allow
      masked:
        inspect: all
        unknown: allow
        deny:
          - host: blocked.example
        mask:
          detectors: all
          fields: [password]
          headers: [set-cookie]
          on-error: block
        record: true
      masked-pass:
        unknown: allow
        mask:
          detectors: [email, order-id]
          on-error: pass
    """

extension EndToEnd {
    static let masking = startShared("masking", port: 17_430, config: maskingConfig)

    func withMasking(_ name: String, policy: String = "masked", _ body: (DaemonFixture, String) throws -> Void) throws {
        try withGuardedCgroup(name, on: Self.masking, policy: policy, body)
    }

    func curl(_ cg: String, _ args: String) -> Harness.ShellResult {
        Harness.sh(Harness.inCgroup(cg, "curl -sS --max-time 20 \(args)"))
    }

    /// Sends `request` (a Python bytes expression) to the test host from the cgroup and returns
    /// everything that came back until the connection closed.
    func rawHTTP(_ request: String, in cg: String) throws -> String {
        let script = """
            import socket
            s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
            s.sendall(\(request))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            print(data.decode(errors="replace"))
            """
        return try Harness.python(script, inCgroup: cg).stdout
    }

    func expectNoPII(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for value in servedPII {
            #expect(!text.contains(value), "\(what) holds '\(value)': \(text.prefix(400))", sourceLocation: sourceLocation)
        }
    }

    @Test func aJSONResponseIsMaskedAndStaysJSON() throws {
        try withMasking("mask-json") { d, cg in
            let r = curl(cg, "http://\(Harness.host4)/pii.json")
            #expect(r.status == 0, "curl: \(r.stderr)")
            expectNoPII(r.stdout, "the body curl got")
            let json = try #require(try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "not JSON: \(r.stdout)")
            let customer = try #require((json["customers"] as? [[String: Any]])?.first)
            #expect(customer["email"] as? String == "[EMAIL]")
            #expect(customer["card"] as? String == "[CREDIT-CARD]")
            #expect(customer["iban"] as? String == "[IBAN]")
            #expect(customer["password"] as? String == "[REDACTED]")
            #expect(customer["order"] as? String == "[ORDER-ID]")
            #expect(customer["name"] as? String == "Ada")
            let events = d.waitForEvents { all in all.contains { $0.type == .mask && $0.process?.cgroup == cg } }
            let mask = try #require(events.first { $0.type == .mask && $0.process?.cgroup == cg })
            #expect(mask.masked == ["email": 1, "credit-card": 1, "iban": 1, "order-id": 1, "field:password": 1])
            #expect(mask.message == "GET /pii.json → 200")
            #expect(mask.connection != nil)
            #expect(mask.policy == "masked")
        }
    }

    @Test func valuesSplitAcrossChunksAreFound() throws {
        try withMasking("mask-chunked") { _, cg in
            let r = curl(cg, "http://\(Harness.host4)/pii.chunked")
            #expect(r.status == 0, "curl: \(r.stderr)")
            #expect(r.stdout == "mail [EMAIL] card [CREDIT-CARD] iban [IBAN] end\n")
        }
    }

    @Test func gzipAndDeflateBodiesAreDecodedMaskedAndSentAsIdentity() throws {
        try withMasking("mask-gzip") { _, cg in
            for path in ["pii.gz", "pii.deflate"] {
                // curl asks for compression and would decode it; it gets identity, masked
                let r = curl(cg, "--compressed -D /dev/stderr http://\(Harness.host4)/\(path)")
                #expect(r.status == 0, "curl \(path): \(r.stderr)")
                expectNoPII(r.stdout, "the body of \(path)")
                #expect(r.stdout.contains("\"email\": \"[EMAIL]\""), "\(path): \(r.stdout)")
                #expect(!r.stderr.lowercased().contains("content-encoding"), "\(path) headers: \(r.stderr)")
                #expect(r.stderr.lowercased().contains("transfer-encoding: chunked"), "\(path) headers: \(r.stderr)")
            }
        }
    }

    @Test func binaryBodiesPassUntouchedAndTextWithoutATypeIsMasked() throws {
        try withMasking("mask-binary") { _, cg in
            let n = 1_000_000
            let r = curl(cg, "http://\(Harness.host4)/bytes/\(n) | sha256sum")
            let expected = Harness.sh("python3 -c 'import hashlib; b=bytes(range(256))*(\(n)//256+1); print(hashlib.sha256(b[:\(n)]).hexdigest())'")
            #expect(r.stdout.split(separator: " ").first.map(String.init) == expected.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            let untyped = curl(cg, "http://\(Harness.host4)/pii.untyped")
            #expect(untyped.stdout == "mail [EMAIL]\n")
        }
    }

    @Test func namedResponseHeadersAreMaskedOnTheWire() throws {
        try withMasking("mask-header") { _, cg in
            let r = curl(cg, "-D - -o /dev/null http://\(Harness.host4)/pii.cookie")
            #expect(r.status == 0, "curl: \(r.stderr)")
            expectNoPII(r.stdout, "the headers curl got")
            #expect(r.stdout.lowercased().contains("set-cookie: [redacted]"), "headers: \(r.stdout)")
        }
    }

    @Test func aLyingContentLengthCutsTheResponseOffAndSaysWhy() throws {
        try withMasking("mask-lying") { d, cg in
            let r = curl(cg, "http://\(Harness.host4)/pii.lying")
            #expect(r.status != 0, "curl should see an incomplete response, got \(r.stdout)")
            expectNoPII(r.stdout, "what curl got of the lying response")
            let events = d.waitForEvents { all in all.contains { $0.type == .close && $0.process?.cgroup == cg } }
            let close = try #require(events.first { $0.type == .close && $0.process?.cgroup == cg })
            #expect(close.end == .proxyError)
            #expect(close.error?.contains("the server broke HTTP in the response to GET /pii.lying") == true, "error: \(close.error ?? "none")")
        }
    }

    @Test func anEncodingThatCannotBeDecodedIsBlockedOrPassedAsThePolicySays() throws {
        try withMasking("mask-br") { d, cg in
            let r = curl(cg, "-w '%{http_code}' http://\(Harness.host4)/pii.br")
            #expect(r.stdout.hasSuffix("502"), "got \(r.stdout)")
            #expect(r.stdout.contains("cannot mask a body in content-encoding br (on-error: block)"))
            expectNoPII(r.stdout, "the 502")
            _ = d
        }
        try withMasking("mask-br-pass", policy: "masked-pass") { _, cg in
            let r = curl(cg, "http://\(Harness.host4)/pii.br")
            #expect(r.stdout.contains("ada.lovelace@example.org"), "on-error: pass relays it as it is: \(r.stdout)")
        }
    }

    @Test func everyRequestOnAKeptAliveConnectionIsDecided() throws {
        try withMasking("mask-keepalive") { d, cg in
            // Two requests on one connection, the second pipelined behind the first in one write.
            let answers = try rawHTTP("b\"GET /pii.json HTTP/1.1\\r\\nHost: \(Harness.host4)\\r\\n\\r\\n\""
                                      + " b\"GET / HTTP/1.1\\r\\nHost: blocked.example\\r\\n\\r\\n\"", in: cg)
            expectNoPII(answers, "the pipelined answers")
            #expect(answers.contains("HTTP/1.1 200"), "first: \(answers)")
            #expect(answers.contains("[EMAIL]"))
            #expect(answers.contains("HTTP/1.1 403 Forbidden"), "second: \(answers)")
            #expect(answers.contains("bordergate: host blocked.example"), "reason: \(answers)")
            let events = d.waitForEvents { all in all.connects().contains { $0.process?.cgroup == cg && $0.verdict == .deny } }
            let deny = try #require(events.connects().first { $0.process?.cgroup == cg && $0.verdict == .deny })
            #expect(deny.destination?.host == "blocked.example")
            #expect(deny.protocol == .http)
            // and urllib's keep-alive client: three requests on one connection, all masked
            let keepAlive = """
                import http.client
                c = http.client.HTTPConnection("\(Harness.host4)", 80, timeout=10)
                for path in ["/pii.json", "/pii.chunked", "/pii.gz"]:
                    c.request("GET", path, headers={"Accept-Encoding": "gzip"})
                    r = c.getresponse()
                    print(r.status, r.read().decode(errors="replace"))
                """
            let k = try Harness.python(keepAlive, inCgroup: cg)
            #expect(k.stdout.components(separatedBy: "200 ").count == 4, "three answers: \(k.stdout) \(k.stderr)")
            expectNoPII(k.stdout, "the kept-alive answers")
        }
    }

    @Test func headContinueAndUpgradesKeepHTTPWorking() throws {
        try withMasking("mask-proto") { _, cg in
            let head = curl(cg, "-I http://\(Harness.host4)/pii.json")
            #expect(head.status == 0, "HEAD: \(head.stderr)")
            #expect(head.stdout.lowercased().contains("content-length:"), "HEAD keeps its headers: \(head.stdout)")
            // Expect: 100-continue with a body of 200 KB, hashed by the server
            _ = Harness.sh("head -c 200000 /dev/urandom > /tmp/bge2e-continue.bin")
            let post = curl(cg, "-H 'Expect: 100-continue' --data-binary @/tmp/bge2e-continue.bin http://\(Harness.host4)/sha256")
            #expect(post.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == Harness.sha256("/tmp/bge2e-continue.bin"))
            let upgrade = """
                import socket
                s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
                s.sendall(b"GET /upgrade HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: echo\\r\\n\\r\\n")
                head = b""
                while b"\\r\\n\\r\\n" not in head:
                    head += s.recv(1)
                s.sendall(b"mail ada.lovelace@example.org")
                print(head.split(b"\\r\\n")[0].decode(), s.recv(100).decode())
                """
            let u0 = try Harness.python(upgrade.replacingOccurrences(of: "s.sendall(b\"mail ada.lovelace@example.org\")", with: "pass"), inCgroup: cg)
            // on-error: block offers no upgrade (its bytes could not be masked); a server that
            // switches anyway gets the tool a 502
            #expect(u0.stdout.hasPrefix("HTTP/1.1 502 Bad Gateway"), "got \(u0.stdout) \(u0.stderr)")
            try withMasking("mask-upgrade-pass", policy: "masked-pass") { _, cgPass in
                let u = try Harness.python(upgrade, inCgroup: cgPass)
                #expect(u.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "HTTP/1.1 101 Switching Protocols mail ada.lovelace@example.org",
                        "on-error: pass relays upgraded bytes as they are: \(u.stdout) \(u.stderr)")
            }
        }
    }

    @Test func requestsThatHideTheirHostAreRefused() throws {
        try withMasking("mask-hosts") { d, cg in
            func ask(_ request: String) throws -> String {
                // the status line
                let all = try rawHTTP(request, in: cg)
                return String(all.prefix { !$0.isNewline }) // a CRLF is one Character
            }
            // a URL in the query is not an absolute-form target: the Host header decides
            let answer1 = try ask("b\"GET /go?u=http://\(Harness.host4)/ HTTP/1.1\\r\\nHost: blocked.example\\r\\n\\r\\n\"")
            #expect(answer1 == "HTTP/1.1 403 Forbidden")
            // absolute form: both the target's host and the Host header are decided
            let answer2 = try ask("b\"GET http://\(Harness.host4)/ HTTP/1.1\\r\\nHost: blocked.example\\r\\n\\r\\n\"")
            #expect(answer2 == "HTTP/1.1 403 Forbidden")
            let answer3 = try ask("b\"GET / HTTP/1.1\\r\\nHost: \(Harness.host4)\\r\\nHost: blocked.example\\r\\n\\r\\n\"")
            // two Host headers: refused by the first bytes' sniffer (a reset) or by the handler (400)
            #expect(answer3.isEmpty || answer3 == "HTTP/1.1 400 Bad Request", "got \(answer3)")
            let answer4 = try ask("b\"CONNECT blocked.example:443 HTTP/1.1\\r\\nHost: \(Harness.host4)\\r\\n\\r\\n\"")
            #expect(answer4 == "HTTP/1.1 403 Forbidden")
            let answer5 = try ask("b\"GET / HTTP/1.1\\r\\nHost: BLOCKED.example.:80\\r\\n\\r\\n\"")
            #expect(answer5 == "HTTP/1.1 403 Forbidden")
            // an ordinary request still works; the Range it asks for is dropped, the body masked whole
            let ranged = curl(cg, "-H 'Range: bytes=0-20' http://\(Harness.host4)/pii.json")
            #expect(ranged.stdout.contains("[EMAIL]") && ranged.stdout.contains("[IBAN]"), "got \(ranged.stdout)")
            let events = d.waitForEvents { all in all.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny }.count >= 5 }
            #expect(events.connects().filter { $0.process?.cgroup == cg && $0.verdict == .deny }.count >= 5)
            for e in events where e.process?.cgroup == cg { #expect(!(e.message ?? "").contains("?u="), "events carry no query: \(e.message ?? "")") }
        }
    }

    @Test func aLargeTextBodyStreamsThroughTheMaskerInBoundedMemory() throws {
        try withMasking("mask-large") { d, cg in
            let n = 100 << 20
            let pid = try #require(d.pid)
            func kib(_ field: String) throws -> Int {
                let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                let line = try #require(status.split(separator: "\n").first { $0.hasPrefix(field + ":") })
                return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
            }
            // Peak resident memory from here on (writing 5 to clear_refs resets VmHWM).
            try "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
            let before = try kib("VmRSS")
            let r = curl(cg, "http://\(Harness.host4)/text/\(n) | tee >(wc -c >&2) | grep -c '\\[EMAIL\\]'")
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == String(n / 4096), "masked values: \(r.stdout) \(r.stderr)")
            #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines) == String(n - (n / 4096) * ("ada.lovelace@example.org".count - "[EMAIL]".count)),
                    "bytes: \(r.stderr)")
            // The daemon never held the body: its peak grew by far less than the body's size.
            let peak = try kib("VmHWM")
            #expect(peak - before < (n >> 10) / 4, "peak RSS grew by \(peak - before) KiB for a \(n >> 20) MiB body")
        }
    }

    @Test func theStateDirectoryHoldsNoneOfTheServedValues() throws {
        try withMasking("mask-state") { d, cg in
            for path in ["pii.json", "pii.gz", "pii.chunked", "pii.cookie", "pii.untyped"] {
                _ = curl(cg, "-o /dev/null http://\(Harness.host4)/\(path)")
            }
            _ = d.waitForEvents { all in all.filter { $0.type == .mask && $0.process?.cgroup == cg }.count >= 5 }
            for value in servedPII {
                let g = Harness.sh("grep -rlaF \(Harness.shellQuote(value)) \(Harness.shellQuote(d.stateDir)) || true")
                #expect(g.stdout.isEmpty, "'\(value)' found in \(g.stdout)")
            }
        }
    }
}

extension EndToEnd {
    @Test func aMaskedExchangeIsRecordedAsTheToolSawItAndExports() throws {
        try withMasking("mask-record") { d, cg in
            let r = curl(cg, "-H 'Authorization: Bearer ghp_0123456789abcdefghijklmnopqrstuvwxyzAB' 'http://\(Harness.host4)/pii.json?mail=ada.lovelace@example.org'")
            #expect(r.status == 0, "curl: \(r.stderr)")
            // the session closes with the connection: its event carries the digest
            let events = d.waitForEvents { all in all.contains { $0.type == .session && $0.process?.cgroup == cg } }
            let session = try #require(events.first { $0.type == .session && $0.process?.cgroup == cg })
            let id = try #require(session.session?.id)
            #expect(session.session?.entries == 1)
            #expect(session.session?.sha256.count == 64)
            #expect(events.contains { $0.type == .mask && $0.connection == id }, "the mask event and the session agree on the id")

            let list = d.cli("sessions list --cgroup \(cg) -o json")
            #expect(list.status == 0, "sessions list: \(list.stderr)")
            #expect(list.stdout.contains(id))
            let show = d.cli("sessions show \(id)")
            #expect(show.status == 0, "sessions show: \(show.stderr)")
            #expect(show.stdout.contains("[EMAIL]") && show.stdout.contains("[CREDIT-CARD]"), "show: \(show.stdout)")
            expectNoPII(show.stdout, "sessions show")
            #expect(!show.stdout.contains("ghp_0123456789"), "the token in the request's Authorization is masked in the recording")
            let har = d.cli("sessions export \(id) --format har")
            #expect(har.status == 0, "export: \(har.stderr)")
            let doc = try #require(try? JSONSerialization.jsonObject(with: Data(har.stdout.utf8)) as? [String: Any], "not JSON: \(har.stdout.prefix(300))")
            let log = try #require(doc["log"] as? [String: Any])
            #expect(log["version"] as? String == "1.2")
            let entry = try #require((log["entries"] as? [[String: Any]])?.first)
            let response = try #require(entry["response"] as? [String: Any])
            #expect(response["status"] as? Int == 200)
            let text = ((response["content"] as? [String: Any])?["text"] as? String) ?? ""
            #expect(text.contains("\"email\": \"[EMAIL]\""), "HAR body: \(text.prefix(300))")
            expectNoPII(har.stdout, "the HAR export")
            // and nothing the test host served is anywhere in the state directory, the store included
            for value in servedPII + ["ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"] {
                let g = Harness.sh("grep -rlaF \(Harness.shellQuote(value)) \(Harness.shellQuote(d.stateDir)) || true")
                #expect(g.stdout.isEmpty, "'\(value)' found in \(g.stdout)")
            }
        }
    }
}

extension EndToEnd {
    @Test func whatNoHandlerReadsIsRecordedAsMetadataOnly() throws {
        // on-error: pass relays TLS it cannot inspect as it is: the session keeps sizes and
        // timings, no content, and the connect event says its content was not inspected
        try withMasking("mask-raw-session", policy: "masked-pass") { d, cg in
            let script = """
                import socket, ssl
                s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
                try:
                    ssl.create_default_context().wrap_socket(s, server_hostname="tls.example")
                except (ssl.SSLError, OSError) as e:
                    print("no handshake")
                """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.contains("no handshake"), "\(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.contains { $0.type == .session && $0.process?.cgroup == cg } }
            let connect = try #require(events.connects().first { $0.process?.cgroup == cg })
            #expect(connect.reason?.contains("tls content not inspected") == true, "\(connect.reason ?? "")")
            let session = try #require(events.first { $0.type == .session && $0.process?.cgroup == cg })
            #expect(session.session?.entries == 0)
            #expect(session.connection == connect.connection)
            let list = d.cli("sessions list --cgroup \(cg) -o json")
            #expect(list.stdout.contains(connect.connection ?? "?") && list.stdout.contains("tls"), "\(list.stdout)")
        }
    }
}
