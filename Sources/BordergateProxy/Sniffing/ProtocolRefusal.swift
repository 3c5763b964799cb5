/// What the proxy writes to a client it refuses, in the protocol the client spoke.
public enum ProtocolRefusal {
    /// Longest reason put into a refusal body; longer ones are cut.
    static let maximumReasonLength = 200

    /// A complete `HTTP/1.1 403 Forbidden` response that closes the connection; the body is the
    /// one line `bordergate: <reason>\n`. The reason is reduced to printable ASCII (anything else,
    /// CR and LF included, becomes `?`) and cut to 200 characters.
    public static func httpForbidden(reason: String) -> [UInt8] {
        var body = Array("bordergate: ".utf8)
        for scalar in reason.unicodeScalars.prefix(maximumReasonLength) {
            body.append((0x20...0x7E).contains(scalar.value) ? UInt8(scalar.value) : UInt8(ascii: "?"))
        }
        body.append(UInt8(ascii: "\n"))
        let head = "HTTP/1.1 403 Forbidden\r\n"
            + "Content-Type: text/plain\r\n"
            + "Content-Length: \(body.count)\r\n"
            + "Connection: close\r\n"
            + "\r\n"
        return Array(head.utf8) + body
    }

    /// A fatal TLS alert record (RFC 8446 §6): content type 21, the record version, length 2,
    /// level 2 (fatal), then `description` (49 is access_denied).
    public static func tlsAlert(_ description: UInt8 = 49, recordVersion: UInt16 = 0x0303) -> [UInt8] {
        [21, UInt8(recordVersion >> 8), UInt8(recordVersion & 0xFF), 0, 2, 2, description]
    }
}
