import Testing
@testable import BordergateProxy

@Suite("Refusal bytes")
struct ProtocolRefusalTests {
    @Test func httpForbidden() {
        let bytes = ProtocolRefusal.httpForbidden(reason: "host evil.example is not allowed")
        let expected = "HTTP/1.1 403 Forbidden\r\n"
            + "Content-Type: text/plain\r\n"
            + "Content-Length: 45\r\n"
            + "Connection: close\r\n"
            + "\r\n"
            + "bordergate: host evil.example is not allowed\n"
        #expect(bytes == Array(expected.utf8))
    }

    @Test func httpForbiddenSanitisesTheReason() {
        let bytes = ProtocolRefusal.httpForbidden(reason: "a\r\nSet-Cookie: x\u{0}\tbücher\u{1F600}")
        let expected = "HTTP/1.1 403 Forbidden\r\n"
            + "Content-Type: text/plain\r\n"
            + "Content-Length: 38\r\n"
            + "Connection: close\r\n"
            + "\r\n"
            + "bordergate: a??Set-Cookie: x??b?cher?\n"
        #expect(bytes == Array(expected.utf8))
    }

    @Test func httpForbiddenCutsLongReasons() {
        let bytes = ProtocolRefusal.httpForbidden(reason: String(repeating: "x", count: 1000))
        let body = "bordergate: " + String(repeating: "x", count: 200) + "\n"
        #expect(bytes == Array("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 213\r\nConnection: close\r\n\r\n\(body)".utf8))
    }

    @Test func httpForbiddenWithAnEmptyReason() {
        #expect(ProtocolRefusal.httpForbidden(reason: "")
                == Array("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nbordergate: \n".utf8))
    }

    @Test func tlsAlert() {
        #expect(ProtocolRefusal.tlsAlert() == [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31])
        #expect(ProtocolRefusal.tlsAlert(112, recordVersion: 0x0301) == [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70])
        #expect(ProtocolRefusal.tlsAlert(40) == [21, 3, 3, 0, 2, 2, 40])
    }

    @Test func refusalsAreNotMistakenForRequests() {
        #expect(ProtocolSniffer.sniff(ProtocolRefusal.tlsAlert()) == .other)
        #expect(ProtocolSniffer.sniff(ProtocolRefusal.httpForbidden(reason: "x")) == .other)
    }
}
