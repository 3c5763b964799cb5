import Testing
@testable import BordergateProxy

@Suite("TLS ClientHello sniffing")
struct TLSSniffingTests {
    // MARK: Real ClientHellos

    @Test("ClientHellos captured from openssl and curl", arguments: [
        (SniffFixtures.openSSLTLS13, "x.example"),
        (SniffFixtures.openSSLTLS12, "mixed.case.example"),
        (SniffFixtures.openSSLNoServerName, nil),
        (SniffFixtures.curlTLS, "curl.example"),
    ] as [([UInt8], String?)])
    func capturedClientHellos(bytes: [UInt8], serverName: String?) {
        #expect(ProtocolSniffer.sniff(bytes) == .tls(serverName: serverName))
        for length in 0..<bytes.count {
            #expect(ProtocolSniffer.sniff(bytes.prefix(length)) == .needMoreBytes, "prefix \(length)")
        }
    }

    @Test func capturedClientHelloFollowedByMoreRecords() {
        let changeCipherSpec: [UInt8] = [20, 3, 3, 0, 1, 1]
        let earlyData: [UInt8] = [23, 3, 3, 0, 3, 9, 9, 9]
        #expect(ProtocolSniffer.sniff(SniffFixtures.curlTLS + changeCipherSpec + earlyData)
                == .tls(serverName: "curl.example"))
    }

    // MARK: Built ClientHellos

    static let builtHellos: [(String, TestClientHello, String?)] = [
        ("1.3 with SNI", .tls13(serverName: "www.Example.COM"), "www.example.com"),
        ("1.3 without SNI", .tls13(serverName: nil), nil),
        ("1.2 with SNI", .tls12(serverName: "a-b_c.example"), "a-b_c.example"),
        ("1.2 without SNI", .tls12(serverName: nil), nil),
        ("IPv4 literal", .tls12(serverName: "192.0.2.1"), "192.0.2.1"),
        ("no extensions block", { var h = TestClientHello(); h.extensions = nil; return h }(), nil),
        ("empty extensions block", TestClientHello(), nil),
        ("SSL 3.0 record", { var h = TestClientHello.tls12(serverName: "old.example"); h.recordVersion = 0x0300; h.legacyVersion = 0x0300; return h }(), "old.example"),
        ("record version 1.2", { var h = TestClientHello.tls13(serverName: "r.example"); h.recordVersion = 0x0303; return h }(), "r.example"),
        ("SNI last after padding", { var h = TestClientHello.tls13(serverName: nil); h.extensions! += [.padding(300), .serverName("late.example")]; return h }(), "late.example"),
        ("unknown extensions", { var h = TestClientHello.tls12(serverName: "u.example"); h.extensions!.insert(.opaque(type: 0xFAFA, []), at: 0); h.extensions!.append(.opaque(type: 0x1A1A, [0])); return h }(), "u.example"),
        ("single-letter name", .tls12(serverName: "x"), "x"),
        ("longest name", .tls12(serverName: Array(repeating: String(repeating: "b", count: 62), count: 4).joined(separator: ".") + ".z."),
         Array(repeating: String(repeating: "b", count: 62), count: 4).joined(separator: ".") + ".z."),
    ]

    @Test("built ClientHellos", arguments: builtHellos)
    func builtClientHellos(label: String, hello: TestClientHello, serverName: String?) {
        #expect(ProtocolSniffer.sniff(hello.bytes) == .tls(serverName: serverName), "\(label)")
    }

    @Test("every truncation point of a valid ClientHello asks for more bytes", arguments: builtHellos)
    func truncations(label: String, hello: TestClientHello, serverName: String?) {
        let bytes = hello.bytes
        for length in 0..<bytes.count {
            let answer = ProtocolSniffer.sniff(bytes[..<length])
            #expect(answer == .needMoreBytes, "\(label): prefix \(length) gave \(answer)")
        }
    }

    @Test("the sniffer takes any collection of bytes")
    func otherCollections() {
        let bytes = TestClientHello.tls13(serverName: "c.example").bytes
        #expect(ProtocolSniffer.sniff(bytes[...]) == .tls(serverName: "c.example"))
        #expect(ProtocolSniffer.sniff(ContiguousArray(bytes)) == .tls(serverName: "c.example"))
        #expect(ProtocolSniffer.sniff(bytes.lazy.map { $0 }) == .tls(serverName: "c.example"))
        // A slice that does not start at index 0.
        let padded = [0xFF, 0xFF] + bytes
        #expect(ProtocolSniffer.sniff(padded.dropFirst(2)) == .tls(serverName: "c.example"))
    }

    // MARK: Several records

    @Test("a ClientHello split across records is reassembled at every cut")
    func splitAcrossRecords() {
        let hello = TestClientHello.tls13(serverName: "split.example")
        let length = hello.handshake.count
        for cut in 1..<length {
            let bytes = hello.records(splittingAt: [cut])
            #expect(ProtocolSniffer.sniff(bytes) == .tls(serverName: "split.example"), "cut \(cut)")
        }
        let manyRecords = hello.records(splittingAt: Array(stride(from: 1, to: length, by: 7)))
        #expect(ProtocolSniffer.sniff(manyRecords) == .tls(serverName: "split.example"))
        for prefix in 0..<manyRecords.count {
            #expect(ProtocolSniffer.sniff(manyRecords.prefix(prefix)) == .needMoreBytes, "prefix \(prefix)")
        }
    }

    @Test func anotherRecordTypeInsideTheClientHello() {
        var bytes = TestClientHello.tls13(serverName: "split.example").records(splittingAt: [40])
        bytes[5 + 40] = 23
        #expect(ProtocolSniffer.sniff(bytes) == .malformed("ClientHello interrupted by another record type"))
        bytes[5 + 40] = 22
        bytes[5 + 40 + 1] = 2
        #expect(ProtocolSniffer.sniff(bytes) == .malformed("bad record version"))
    }

    @Test func dataAfterTheClientHelloInItsRecord() {
        var bytes = TestClientHello.tls12(serverName: "a.example").bytes
        bytes += [0, 0]
        let recordLength = bytes.count - 5
        bytes[3] = UInt8(recordLength >> 8)
        bytes[4] = UInt8(recordLength & 0xFF)
        #expect(ProtocolSniffer.sniff(bytes) == .malformed("data after ClientHello in its record"))
    }

    // MARK: The 16 KiB cap

    /// A TLS 1.3 ClientHello padded so that its single record is `recordLength` bytes long.
    static func paddedHello(recordLength: Int) -> TestClientHello {
        var hello = TestClientHello.tls13(serverName: "big.example")
        let unpadded = hello.handshake.count + 4  // the padding extension's own header
        hello.extensions!.append(.padding(recordLength - unpadded))
        return hello
    }

    @Test func largestClientHelloThatFits() {
        let hello = Self.paddedHello(recordLength: 1 << 14)
        let bytes = hello.bytes
        #expect(bytes.count == ProtocolSniffer.maximumHeadBytes)
        #expect(ProtocolSniffer.sniff(bytes) == .tls(serverName: "big.example"))
        #expect(ProtocolSniffer.sniff(bytes.dropLast()) == .needMoreBytes)
        // The same message split in two records no longer fits.
        #expect(ProtocolSniffer.sniff(hello.records(splittingAt: [100])) == .malformed("ClientHello over 16 KiB"))
    }

    @Test func clientHelloOverTheCap() {
        let hello = Self.paddedHello(recordLength: (1 << 14) + 1)
        let split = hello.records(splittingAt: [1 << 14])
        // Decided from the handshake header, long before the bytes are all in.
        #expect(ProtocolSniffer.sniff(split.prefix(9)) == .malformed("ClientHello over 16 KiB"))
        #expect(ProtocolSniffer.sniff(split) == .malformed("ClientHello over 16 KiB"))
        // One record of 2^14 + 1 bytes is allowed by the record layer but cannot be buffered.
        #expect(ProtocolSniffer.sniff(hello.bytes) == .malformed("ClientHello over 16 KiB"))
    }

    @Test func recordLengthLimits() {
        #expect(ProtocolSniffer.sniff([22, 3, 1, 0x41, 0x01]) == .malformed("record longer than 2^14+256"))
        #expect(ProtocolSniffer.sniff([22, 3, 1, 0x41, 0x00]) == .malformed("ClientHello over 16 KiB"))
        #expect(ProtocolSniffer.sniff([22, 3, 1, 0, 0]) == .malformed("empty handshake record"))
        #expect(ProtocolSniffer.sniff([22, 3, 1, 0x40, 0x00, 1]) == .needMoreBytes)
    }

    // MARK: Early decisions

    @Test("first bytes", arguments: [
        ([22], SniffedProtocol.needMoreBytes),
        ([22, 3], .needMoreBytes),
        ([22, 3, 4], .needMoreBytes),
        ([22, 3, 1, 0], .needMoreBytes),
        ([22, 3, 1, 0, 50], .needMoreBytes),
        ([22, 2], .other),
        ([22, 0x47], .other),
        ([22, 3, 5], .other),
        ([22, 3, 0xFF, 0, 0], .other),
        ([22, 3, 1, 0, 50, 2], .malformed("handshake is not a ClientHello")),
        ([22, 3, 1, 0, 50, 0], .malformed("handshake is not a ClientHello")),
        ([23, 3, 3, 0, 5], .other),
        ([21, 3, 3, 0, 2, 2, 40], .other),
        ([0x80, 0x2E, 0x01, 0x03, 0x01], .other),  // SSLv2-style ClientHello
    ] as [([UInt8], SniffedProtocol)])
    func firstBytes(bytes: [UInt8], expected: SniffedProtocol) {
        #expect(ProtocolSniffer.sniff(bytes) == expected)
    }

    // MARK: Lies

    @Test("malformed ClientHellos", arguments: [
        ("session id of 33 bytes", { var h = TestClientHello.tls12(serverName: "a.example"); h.sessionID = Array(repeating: 1, count: 33); return h }(),
         "bad session id length"),
        ("no cipher suites", { var h = TestClientHello.tls12(serverName: "a.example"); h.cipherSuites = []; return h }(),
         "bad cipher suites length"),
        ("no compression methods", { var h = TestClientHello.tls12(serverName: "a.example"); h.compressionMethods = []; return h }(),
         "bad compression methods length"),
        ("legacy version 0x0205", { var h = TestClientHello.tls12(serverName: "a.example"); h.legacyVersion = 0x0205; return h }(),
         "bad ClientHello version"),
        ("duplicate extension", { var h = TestClientHello.tls12(serverName: "a.example"); h.extensions!.append(.sessionTicket); h.extensions!.append(.sessionTicket); return h }(),
         "duplicate extension"),
        ("two server_name extensions", { var h = TestClientHello.tls12(serverName: "a.example"); h.extensions!.append(.serverName("b.example")); return h }(),
         "duplicate extension"),
        ("two host names", { var h = TestClientHello.tls12(serverName: nil); h.extensions = [.serverNameEntries(["a.example", "b.example"])]; return h }(),
         "two host names in server_name"),
        ("unknown name type", { var h = TestClientHello.tls12(serverName: nil); h.extensions = [.serverNameEntries(nameType: 1, ["a.example"])]; return h }(),
         "unknown server name type"),
        ("empty server name list", { var h = TestClientHello.tls12(serverName: nil); h.extensions = [.serverNameEntries([])]; return h }(),
         "bad server name list length"),
        ("empty server_name extension", { var h = TestClientHello.tls12(serverName: nil); h.extensions = [.opaque(type: 0, [])]; return h }(),
         "bad server name list length"),
        ("empty host name", .tls12(serverName: ""), "bad server name"),
        ("space in host name", .tls12(serverName: "a b.example"), "bad server name"),
        ("NUL in host name", .tls12(serverName: "a.example\u{0}.evil"), "bad server name"),
        ("slash in host name", .tls12(serverName: "a.example/x"), "bad server name"),
        ("non-ASCII host name", .tls12(serverName: "bücher.example"), "bad server name"),
        ("IPv6 literal", .tls12(serverName: "2001:db8::1"), "bad server name"),
        ("host name over 254 bytes", .tls12(serverName: Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")), "bad server name"),
        ("label over 63 bytes", .tls12(serverName: String(repeating: "a", count: 64) + ".example"), "bad server name"),
        ("empty label", .tls12(serverName: "a..example"), "bad server name"),
        ("leading dot", .tls12(serverName: ".example"), "bad server name"),
        ("only a dot", .tls12(serverName: "."), "bad server name"),
    ] as [(String, TestClientHello, String)])
    func malformed(label: String, hello: TestClientHello, reason: String) {
        #expect(ProtocolSniffer.sniff(hello.bytes) == .malformed(reason), "\(label)")
    }

    @Test func extensionsLengthWithOneByteLeft() {
        var hello = TestClientHello.tls12(serverName: nil)
        hello.extensions = nil
        hello.compressionMethods = [0, 0]
        var bytes = hello.bytes
        // Claim one compression method so that one byte is left where the extensions length goes.
        let compressionLengthOffset = 5 + 4 + 2 + 32 + 1 + hello.sessionID.count + 2 + hello.cipherSuites.count * 2
        #expect(bytes[compressionLengthOffset] == 2)
        bytes[compressionLengthOffset] = 1
        #expect(ProtocolSniffer.sniff(bytes) == .malformed("bad extensions length"))
    }

    @Test("every length field set to a lie gives malformed or needMoreBytes, never a wrong name",
          arguments: builtHellos + [("split SNI", TestClientHello.tls13(serverName: "s.example"), "s.example")])
    func lyingLengths(label: String, hello: TestClientHello, serverName: String?) {
        let writer = hello.singleRecordWriter()
        #expect(writer.lengthFields.count >= 5)
        var coincidences = 0, lies = 0
        for field in writer.lengthFields {
            var original = 0
            for index in field.offset..<field.offset + field.width { original = original << 8 | Int(writer.bytes[index]) }
            let allOnes = (1 << (8 * field.width)) - 1
            let fieldLies = Set([original + 1, original - 1, 0, allOnes, min(0xFFFF, allOnes)])
                .filter { $0 >= 0 && $0 <= allOnes && $0 != original }
            for lie in fieldLies {
                lies += 1
                var bytes = writer.bytes
                var value = lie
                for index in stride(from: field.offset + field.width - 1, through: field.offset, by: -1) {
                    bytes[index] = UInt8(value & 0xFF)
                    value >>= 8
                }
                let answer = ProtocolSniffer.sniff(bytes)
                switch answer {
                case .malformed, .needMoreBytes:
                    break
                case .tls(let name):
                    // A length inside an extension the sniffer skips may be wrong without it
                    // noticing; a checked one only when the lie happens to re-align into another
                    // well-formed list (a zero-length supported_groups whose body then reads as
                    // an extension of type 6). Either way the name must still be the true one.
                    #expect(name == serverName, "\(label): \(field) = \(lie) gave \(answer)")
                    if field.checked { coincidences += 1 }
                default:
                    Issue.record("\(label): \(field) = \(lie) gave \(answer)")
                }
            }
        }
        // Re-alignments are rare: nearly every lie in a checked length is caught.
        #expect(coincidences * 10 <= lies, "\(label): \(coincidences) of \(lies) lies went unnoticed")
    }

    // MARK: Fuzz

    @Test("random bytes never crash the sniffer")
    func randomBytes() {
        for seed in 0..<3000 {
            var random = SniffRandom(seed: UInt64(seed))
            var bytes = (0..<random.below(400)).map { _ in random.byte() }
            // Most seeds get a plausible record and handshake header, and half of those the
            // right lengths, so the fuzz reaches the ClientHello walk.
            if seed % 4 != 0, bytes.count >= 11 {
                bytes[0] = 22; bytes[1] = 3; bytes[2] = UInt8(random.below(5))
                bytes[5] = 1
                if seed % 2 == 0 {
                    let recordLength = bytes.count - 5, messageLength = bytes.count - 9
                    bytes[3] = UInt8(recordLength >> 8); bytes[4] = UInt8(recordLength & 0xFF)
                    bytes[6] = 0; bytes[7] = UInt8(messageLength >> 8); bytes[8] = UInt8(messageLength & 0xFF)
                    bytes[9] = 3; bytes[10] = UInt8(random.below(5))
                }
            }
            checkSane(ProtocolSniffer.sniff(bytes), seed: seed)
        }
    }

    @Test("randomly damaged ClientHellos never crash or name a host with bad characters")
    func damagedClientHellos() {
        let originals = [SniffFixtures.openSSLTLS13, SniffFixtures.curlTLS,
                         TestClientHello.tls13(serverName: "d.example").records(splittingAt: [60, 61, 200])]
        for seed in 0..<3000 {
            var random = SniffRandom(seed: UInt64(seed) &+ 1_000_000)
            var bytes = originals[seed % originals.count]
            for _ in 0..<(1 + random.below(4)) {
                switch random.below(3) {
                case 0: bytes[random.below(bytes.count)] = random.byte()
                case 1: bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8))
                default: bytes.removeLast(random.below(min(40, bytes.count)))
                }
            }
            checkSane(ProtocolSniffer.sniff(bytes), seed: seed)
        }
    }

    func checkSane(_ answer: SniffedProtocol, seed: Int) {
        if case .tls(let name?) = answer {
            #expect(SniffedHostname.normalize(Array(name.utf8)) == name, "seed \(seed): \(name)")
        }
        if case .malformed(let reason) = answer {
            #expect(!reason.isEmpty && reason.utf8.count < 60, "seed \(seed)")
        }
    }
}
