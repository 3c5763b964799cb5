import Testing
@testable import BordergateProxy

@Suite("PostgreSQL first messages")
struct PostgreSQLSniffingTests {
    /// What psql 15 (libpq) sent with `sslmode=require`, captured on loopback.
    static let psqlSSLRequest = sniffHex("0000000804d2162f")
    /// What psql 15 sent with `sslmode=disable user=alice dbname=shop`: StartupMessage 3.0.
    static let psqlStartup = sniffHex("""
        0000003800030000757365720061 6c6963650064617461626173650073 686f70006170706c69636174696f6e
        5f6e616d65007073716c0000
        """)
    /// GSSENCRequest and CancelRequest (process 4242, key 0x01020304), from the protocol documentation.
    static let gssEncRequest = sniffHex("0000000804d21630")
    static let cancelRequest = sniffHex("0000001004d2162e0000109201020304")
    /// StartupMessage 3.2 (PostgreSQL 18), user only.
    static let startup32 = sniffHex("0000001200030002757365720062 6f620000")

    @Test("first messages", arguments: [
        (psqlSSLRequest, PostgreSQLFirstMessage.sslRequest),
        (psqlStartup, .startup(major: 3, minor: 0)),
        (gssEncRequest, .gssEncRequest),
        (cancelRequest, .cancelRequest),
        (startup32, .startup(major: 3, minor: 2)),
    ] as [([UInt8], PostgreSQLFirstMessage)])
    func firstMessages(bytes: [UInt8], expected: PostgreSQLFirstMessage) {
        #expect(ProtocolSniffer.sniff(bytes) == .postgresql(expected))
        // Eight bytes decide; fewer wait.
        #expect(ProtocolSniffer.sniff(bytes.prefix(8)) == .postgresql(expected))
        for length in 0..<8 {
            #expect(ProtocolSniffer.sniff(bytes.prefix(length)) == .needMoreBytes, "prefix \(length)")
        }
        var sniffer = IncrementalSniffer()
        for byte in bytes.prefix(7) { #expect(sniffer.feed([byte]) == .needMoreBytes) }
        #expect(sniffer.feed(bytes.dropFirst(7)) == .postgresql(expected))
        #expect(ProxyProtocol(.postgresql(expected)) == .postgresql)
    }

    @Test("not PostgreSQL, decided as soon as a byte rules it out", arguments: [
        ([0, 1], "a length over 10000"),
        ([0, 0, 0x28], "a length over 10000"),
        ([0, 0, 0, 8, 0x05], "no such code"),
        ([0, 0, 0, 8, 0x00, 0x02], "protocol 2"),
        ([0, 0, 0, 8, 0x04, 0xD3], "no such code"),
        ([0, 0, 0, 8, 0x04, 0xD2, 0x17], "no such code"),
        ([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x31], "no such code"),
        ([0, 0, 0, 9, 0x04, 0xD2, 0x16, 0x2F], "an SSLRequest of the wrong length"),
        ([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2E], "a CancelRequest too short"),
        ([0, 0, 0, 8, 0x00, 0x03, 0x00, 0x00], "a StartupMessage with no room for its terminator"),
        ([0, 0, 0x27, 0x11, 0x00, 0x03, 0x00, 0x00], "a StartupMessage over 10000 bytes"),
    ] as [([UInt8], String)])
    func notPostgreSQL(bytes: [UInt8], why: String) {
        #expect(ProtocolSniffer.sniff(bytes) == .other, "\(why)")
    }
}
