import Testing
@testable import BordergateProxy

/// A head that arrives a piece at a time is looked at once: the work (bytes examined) grows with
/// its length, not with its square, and the answer is the one the whole head gets.
@Suite("incremental sniffing")
struct IncrementalSniffingTests {
    /// A 16 KiB request head of many short header lines, then the blank line.
    static let bigHead: [UInt8] = {
        var text = "GET /big HTTP/1.1\r\nHost: big.example\r\n"
        var i = 0
        while text.utf8.count < ProtocolSniffer.maximumHeadBytes - 40 {
            text += "X-\(i): v\r\n"
            i += 1
        }
        return Array((text + "\r\n").utf8)
    }()

    /// A ClientHello padded to fill a 16 KiB record.
    static let bigHello = TestClientHello.tls13(serverName: "big.example").withPadding(to: 16_000)
    /// One of 8 KB split into 7-byte records (each with its 5-byte header: 13.7 KB in all).
    static let manyRecords = TestClientHello.tls13(serverName: "big.example").withPadding(to: 8_000)
        .records(splittingAt: Array(stride(from: 1, to: 8_000, by: 7)))

    static func feedOneByteAtATime(_ bytes: [UInt8]) -> (SniffedProtocol, IncrementalSniffer, Int) {
        var sniffer = IncrementalSniffer()
        var answer = SniffedProtocol.needMoreBytes
        var feeds = 0
        for byte in bytes {
            answer = sniffer.feed(CollectionOfOne(byte))
            feeds += 1
            if answer != .needMoreBytes { break }
        }
        return (answer, sniffer, feeds)
    }

    @Test func aBigHTTPHeadOneByteAtATimeCostsLinearWork() {
        let head = Self.bigHead
        #expect(head.count > 16_000)
        let (answer, sniffer, feeds) = Self.feedOneByteAtATime(head)
        #expect(answer == .http(host: "big.example", method: "GET", target: "/big"))
        #expect(answer == ProtocolSniffer.sniff(head))
        #expect(feeds == head.count, "decided on the last byte")
        // Re-reading everything on every byte would examine ~head.count^2 / 2 (over 130 million).
        #expect(sniffer.bytesExamined <= 4 * head.count, "examined \(sniffer.bytesExamined) for \(head.count)")
    }

    @Test func aLongRequestLineOneByteAtATimeCostsLinearWork() {
        let line = Array(("GET /" + String(repeating: "a", count: 16_000)).utf8)
        let (answer, sniffer, _) = Self.feedOneByteAtATime(line)
        #expect(answer == .needMoreBytes)
        #expect(sniffer.bytesExamined <= 4 * line.count, "examined \(sniffer.bytesExamined) for \(line.count)")
        // A CR is plausible only as the last byte so far: one more byte after it is not HTTP.
        var s = IncrementalSniffer()
        #expect(s.feed(Array("GET / HTTP/1.1\r".utf8)) == .needMoreBytes)
        #expect(s.feed(Array("x".utf8)) == .other)
    }

    @Test func aBigClientHelloOneByteAtATimeCostsLinearWork() {
        for bytes in [Self.bigHello.bytes, Self.manyRecords] {
            let (answer, sniffer, feeds) = Self.feedOneByteAtATime(bytes)
            #expect(answer == .tls(serverName: "big.example"))
            #expect(answer == ProtocolSniffer.sniff(bytes))
            #expect(feeds == bytes.count)
            #expect(sniffer.bytesExamined <= 4 * bytes.count, "examined \(sniffer.bytesExamined) for \(bytes.count)")
        }
    }

    /// Any split of the input gives the answer the whole input gets, for every fixture.
    @Test func piecesGiveTheAnswerOfTheWhole() {
        var random = SniffRandom(seed: 13)
        let inputs: [[UInt8]] = [
            SniffFixtures.curlGet, SniffFixtures.curlPost, SniffFixtures.curlConnect, SniffFixtures.curlTLS,
            SniffFixtures.openSSLTLS13, SniffFixtures.openSSLTLS12, SniffFixtures.openSSLNoServerName,
            Array("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".utf8),
            Array("GET / HTTP/1.1\r\nHost: a.example\r\n bad\r\n\r\n".utf8),
            TestClientHello.tls13(serverName: "split.example").records(splittingAt: [3, 40, 41, 90]),
            PostgreSQLSniffingTests.psqlStartup, Self.bigHead,
        ]
        for input in inputs {
            let whole = ProtocolSniffer.sniff(input)
            for _ in 0..<20 {
                var sniffer = IncrementalSniffer()
                var answer = SniffedProtocol.needMoreBytes
                var offset = 0
                while offset < input.count, answer == .needMoreBytes {
                    let n = 1 + random.below(min(64, input.count - offset))
                    answer = sniffer.feed(input[offset..<offset + n])
                    offset += n
                }
                #expect(answer == whole)
            }
        }
    }
}

extension TestClientHello {
    /// This ClientHello with a padding extension that brings its handshake message to about `size` bytes.
    func withPadding(to size: Int) -> TestClientHello {
        var hello = self
        hello.extensions = (hello.extensions ?? []) + [.padding(max(0, size - handshake.count - 4))]
        return hello
    }
}
