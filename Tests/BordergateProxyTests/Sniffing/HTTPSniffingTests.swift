import Testing
@testable import BordergateProxy

@Suite("HTTP/1.x request head sniffing")
struct HTTPSniffingTests {
    static func sniff(_ text: String) -> SniffedProtocol { ProtocolSniffer.sniff(Array(text.utf8)) }

    // MARK: What curl sends

    @Test("request heads captured from curl", arguments: [
        (SniffFixtures.curlGet, SniffedProtocol.http(host: "localhost", method: "GET", target: "/path?q=1")),
        (SniffFixtures.curlPost, .http(host: "127.0.0.1", method: "POST", target: "/submit")),
        (SniffFixtures.curlProxyGet, .http(host: "example.com", method: "GET", target: "http://Example.COM:8080/x")),
        (SniffFixtures.curlConnect, .http(host: "secure.example", method: "CONNECT", target: "secure.example:443")),
    ] as [([UInt8], SniffedProtocol)])
    func curlHeads(bytes: [UInt8], expected: SniffedProtocol) {
        #expect(ProtocolSniffer.sniff(bytes) == expected)
        // Every prefix short of the blank line is undecided.
        let headEnd = bytes.indices.first { bytes[$0...].starts(with: "\r\n\r\n".utf8) }! + 4
        for length in 0..<headEnd {
            #expect(ProtocolSniffer.sniff(bytes.prefix(length)) == .needMoreBytes, "prefix \(length)")
        }
    }

    // MARK: Where the host comes from

    @Test("hosts", arguments: [
        ("GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", "example.com"),
        ("GET / HTTP/1.1\r\nhost: lower.example\r\n\r\n", "lower.example"),
        ("GET / HTTP/1.1\r\nHOST: upper.example\r\n\r\n", "upper.example"),
        ("GET / HTTP/1.1\r\nHost: \t spaced.example:8080 \t\r\n\r\n", "spaced.example"),
        ("GET / HTTP/1.1\r\nHost: port.example:\r\n\r\n", "port.example"),
        ("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n", "2001:db8::1"),
        ("GET / HTTP/1.1\r\nHost: [::ffff:192.0.2.1]\r\n\r\n", "::ffff:192.0.2.1"),
        ("GET / HTTP/1.1\r\nHost: 192.0.2.7:81\r\n\r\n", "192.0.2.7"),
        ("GET / HTTP/1.1\r\nHost: dot.example.:80\r\n\r\n", "dot.example."),
        ("GET / HTTP/1.0\r\nUser-Agent: old\r\n\r\n", nil),
        ("GET / HTTP/1.1\r\nHost:\r\n\r\n", nil),
        ("GET / HTTP/1.1\r\nHost: same.example\r\nHost: SAME.example\r\n\r\n", "same.example"),
        ("GET http://absolute.example/p?q HTTP/1.1\r\nHost: other.example\r\n\r\n", "absolute.example"),
        ("GET HTTPS://Abs.Example:8443 HTTP/1.1\r\n\r\n", "abs.example"),
        ("GET http://[2001:db8::2]:8080/x HTTP/1.1\r\nHost: [2001:db8::2]:8080\r\n\r\n", "2001:db8::2"),
        ("GET http://q.example?x=1 HTTP/1.1\r\n\r\n", "q.example"),
        ("CONNECT tunnel.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", "tunnel.example"),
        ("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", "2001:db8::1"),
        ("OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n", "star.example"),
        ("PROPFIND /dav/ HTTP/1.1\r\nHost: dav.example\r\nDepth: 1\r\n\r\n", "dav.example"),
    ] as [(String, String?)])
    func hosts(head: String, host: String?) {
        guard case .http(let found, _, _) = Self.sniff(head) else {
            Issue.record("\(head.debugDescription) gave \(Self.sniff(head))")
            return
        }
        #expect(found == host, "\(head.debugDescription)")
    }

    @Test func methodAndTargetAreReported() {
        #expect(Self.sniff("DELETE /items/7?force=1 HTTP/1.1\r\nHost: api.example\r\n\r\n")
                == .http(host: "api.example", method: "DELETE", target: "/items/7?force=1"))
    }

    @Test("line endings", arguments: [
        "GET /x HTTP/1.1\nHost: lf.example\n\n",
        "GET /x HTTP/1.1\r\nHost: lf.example\n\n",
        "GET /x HTTP/1.1\nHost: lf.example\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: lf.example\r\n\n",
        "GET /x HTTP/1.1\nHost: lf.example\n\r\n",
    ])
    func lineEndings(head: String) {
        #expect(Self.sniff(head) == .http(host: "lf.example", method: "GET", target: "/x"))
        #expect(Self.sniff(String(head.dropLast())) == .needMoreBytes)
    }

    @Test func bytesAfterTheHeadAreIgnored() {
        #expect(Self.sniff("POST /u HTTP/1.1\r\nHost: b.example\r\nContent-Length: 4\r\n\r\n\u{0}\u{1}\r\n")
                == .http(host: "b.example", method: "POST", target: "/u"))
    }

    // MARK: Undecided

    @Test("prefixes ask for more", arguments: [
        "", "G", "GE", "GET", "GET ", "GET /", "GET / HTTP/1.1", "GET / HTTP/1.1\r",
        "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: a", "GET / HTTP/1.1\r\nHost: a\r\n\r",
        "P", "PU", "PROP", "PROPF", "C", "CONNEC", "M", "UNLOC",
    ])
    func needMore(head: String) {
        #expect(Self.sniff(head) == .needMoreBytes, "\(head.debugDescription)")
    }

    // MARK: Not HTTP/1.x

    @Test("other protocols", arguments: [
        "get / HTTP/1.1\r\n\r\n",
        "GEX",
        "GETX / HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "EHLO mail.example\r\n",
        "HELO",
        "GET / HTTP/2\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET /\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET \u{1}",
        "GET /a\rb HTTP/1.1\r\n\r\n",
        "GET /caf\u{E9} HTTP/1.1\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "{\"jsonrpc\":\"2.0\"}",
    ])
    func otherProtocols(head: String) {
        #expect(Self.sniff(head) == .other, "\(head.debugDescription)")
    }

    @Test func binaryFirstBytesAreOtherAtOnce() {
        // 0x00 may start a PostgreSQL client's first message (see PostgreSQLSniffingTests).
        for first in UInt8(1)...255 where first != 22 && !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first) {
            #expect(ProtocolSniffer.sniff([first]) == .other, "\(first)")
        }
        // SOCKS5, an SSH banner: decided from the first one or two bytes.
        #expect(ProtocolSniffer.sniff([5, 1, 0]) == .other)
        #expect(ProtocolSniffer.sniff(Array("SS".utf8)) == .other)
    }

    // MARK: Lies

    @Test("malformed heads", arguments: [
        ("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "two different Host headers"),
        ("GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example:80\r\n\r\n", "two different Host headers"),
        ("GET / HTTP/1.1\r\nHost a.example\r\n\r\n", "header line without colon"),
        ("GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", "bad header name"),
        ("GET / HTTP/1.1\r\n: empty\r\n\r\n", "bad header name"),
        ("GET / HTTP/1.1\r\nHost: a.example\r\n folded\r\n\r\n", "obsolete line folding"),
        ("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", "control character in header"),
        ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "control character in header"),
        ("GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: a.example:http\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: [2001:db8::1\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: [a.example]\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: a..example\r\n\r\n", "bad Host header"),
        ("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "bad Host header"),
        ("GET  HTTP/1.1\r\n\r\n", "bad request line"),
        ("GET / x HTTP/1.1\r\n\r\n", "bad request line"),
        ("GET example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "bad request target"),
        ("GET * HTTP/1.1\r\nHost: example.com\r\n\r\n", "bad request target"),
        ("GET http://user@a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", "userinfo in request target"),
        ("GET http:///path HTTP/1.1\r\nHost: b.example\r\n\r\n", "bad host in request target"),
        ("CONNECT /path HTTP/1.1\r\nHost: b.example\r\n\r\n", "bad CONNECT target"),
        ("CONNECT a.example:https HTTP/1.1\r\n\r\n", "bad CONNECT target"),
    ])
    func malformed(head: String, reason: String) {
        #expect(Self.sniff(head) == .malformed(reason), "\(head.debugDescription)")
    }

    @Test func aBadLineIsReportedBeforeTheHeadEnds() {
        #expect(Self.sniff("GET / HTTP/1.1\r\nno colon here\r\n") == .malformed("header line without colon"))
    }

    // MARK: The 16 KiB cap

    @Test func headOverTheCap() {
        var head = Array("GET / HTTP/1.1\r\nHost: big.example\r\n".utf8)
        while head.count < ProtocolSniffer.maximumHeadBytes + 100 {
            head += Array("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".utf8)
        }
        #expect(ProtocolSniffer.sniff(head) == .malformed("request head over 16 KiB"))
        #expect(ProtocolSniffer.sniff(head.prefix(ProtocolSniffer.maximumHeadBytes)) == .malformed("request head over 16 KiB"))
        #expect(ProtocolSniffer.sniff(head.prefix(ProtocolSniffer.maximumHeadBytes - 1)) == .needMoreBytes)
        // The blank line past the cap does not help.
        #expect(ProtocolSniffer.sniff(head + Array("\r\n".utf8)) == .malformed("request head over 16 KiB"))
        // One long request line is over the cap too.
        let longLine = Array("GET /".utf8) + Array(repeating: UInt8(ascii: "a"), count: ProtocolSniffer.maximumHeadBytes)
        #expect(ProtocolSniffer.sniff(longLine) == .malformed("request head over 16 KiB"))
    }

    @Test func headExactlyAtTheCap() {
        let start = Array("GET / HTTP/1.1\r\nHost: edge.example\r\nX-Pad: ".utf8)
        let end = Array("\r\n\r\n".utf8)
        let pad = Array(repeating: UInt8(ascii: "p"), count: ProtocolSniffer.maximumHeadBytes - start.count - end.count)
        let head = start + pad + end
        #expect(head.count == ProtocolSniffer.maximumHeadBytes)
        #expect(ProtocolSniffer.sniff(head) == .http(host: "edge.example", method: "GET", target: "/"))
        #expect(ProtocolSniffer.sniff(head + Array("body".utf8)) == .http(host: "edge.example", method: "GET", target: "/"))
        let oneMore = start + pad + Array("p".utf8) + end
        #expect(ProtocolSniffer.sniff(oneMore) == .malformed("request head over 16 KiB"))
    }

    // MARK: Fuzz

    @Test("randomly damaged request heads never crash or name a host with bad characters")
    func damagedHeads() {
        let originals = [SniffFixtures.curlGet, SniffFixtures.curlProxyGet, SniffFixtures.curlConnect,
                         Array("GET http://[2001:db8::1]:80/ HTTP/1.1\nHost: [2001:db8::1]\n\n".utf8)]
        let alphabet = Array(" :\r\n[]@/.HTTP1GETx\u{0}\t".utf8)
        for seed in 0..<3000 {
            var random = SniffRandom(seed: UInt64(seed) &+ 7_000_000)
            var bytes = originals[seed % originals.count]
            for _ in 0..<(1 + random.below(4)) {
                let index = random.below(bytes.count)
                switch random.below(4) {
                case 0: bytes[index] = alphabet[random.below(alphabet.count)]
                case 1: bytes[index] = random.byte()
                case 2: bytes.insert(alphabet[random.below(alphabet.count)], at: index)
                default: bytes.remove(at: index)
                }
                if bytes.isEmpty { break }
            }
            let answer = ProtocolSniffer.sniff(bytes)
            if case .http(let host?, _, _) = answer {
                let valid = SniffedHostname.normalize(Array(host.utf8)) == host
                    || SniffedHostname.normalizeIPv6(Array(host.utf8)) == host
                #expect(valid, "seed \(seed): \(host)")
            }
        }
    }
}
