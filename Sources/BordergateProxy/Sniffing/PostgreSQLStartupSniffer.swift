/// Recognises the first message a PostgreSQL client sends (PostgreSQL documentation, "Frontend/
/// Backend Protocol", §55.2 and §55.7): an Int32 length that counts itself, then an Int32 code.
///
/// - SSLRequest: length 8, code 80877103; GSSENCRequest: length 8, code 80877104.
/// - CancelRequest: length 16 (protocol 3.2 allows a longer secret key, up to 256 bytes), code 80877102.
/// - StartupMessage: length 9 to 10000 (the server's limit), code major 3 << 16 | minor.
///
/// The 8 bytes of length and code decide; the parameters after them (user, database) are not
/// read: they name no host, and waiting for them would only delay the verdict. Every length
/// starts with 0x00, which is how ``ProtocolSniffer`` sends the bytes here.
enum PostgreSQLStartupSniffer {
    static let sslRequestCode: UInt32 = 80_877_103
    static let gssEncRequestCode: UInt32 = 80_877_104
    static let cancelRequestCode: UInt32 = 80_877_102
    static let protocolMajor: UInt32 = 3
    /// The server refuses a startup packet longer than this (MAX_STARTUP_PACKET_LENGTH).
    static let maximumStartupLength: UInt32 = 10_000
    static let headerLength = 8

    /// `bytes` starts with 0x00.
    static func sniff(_ bytes: [UInt8]) -> SniffedProtocol {
        // Decide "not PostgreSQL" from as few bytes as possible, so an opaque protocol that also
        // starts with 0x00 is not kept waiting for 8 bytes.
        let prefix = Array(bytes.prefix(headerLength))
        guard couldStart(prefix) else { return .other }
        guard prefix.count == headerLength else { return .needMoreBytes }
        let length = uint32(prefix, at: 0)
        let code = uint32(prefix, at: 4)
        switch code {
        case sslRequestCode where length == 8: return .postgresql(.sslRequest)
        case gssEncRequestCode where length == 8: return .postgresql(.gssEncRequest)
        case cancelRequestCode where (16...(12 + 256)).contains(length): return .postgresql(.cancelRequest)
        case _ where code >> 16 == protocolMajor && (9...maximumStartupLength).contains(length):
            return .postgresql(.startup(major: Int(code >> 16), minor: Int(code & 0xFFFF)))
        default: return .other
        }
    }

    /// Whether `prefix` (at most 8 bytes) can still become one of the four messages.
    static func couldStart(_ prefix: [UInt8]) -> Bool {
        // Every length is at most 10000 (0x00002710): bytes 0 and 1 are zero, byte 2 at most 0x27.
        if prefix.count > 0, prefix[0] != 0 { return false }
        if prefix.count > 1, prefix[1] != 0 { return false }
        if prefix.count > 2, prefix[2] > 0x27 { return false }
        // The code: 0x00 0x03 for a StartupMessage, 0x04 0xD2 for the special requests.
        if prefix.count > 4, prefix[4] != 0x00, prefix[4] != 0x04 { return false }
        if prefix.count > 5 {
            switch prefix[4] {
            case 0x00: if prefix[5] != 0x03 { return false }
            default: if prefix[5] != 0xD2 { return false }
            }
        }
        if prefix.count > 6, prefix[4] == 0x04, prefix[6] != 0x16 { return false }
        if prefix.count > 7, prefix[4] == 0x04, !(0x2E...0x30).contains(prefix[7]) { return false }
        return true
    }

    static func uint32(_ b: [UInt8], at i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
}

/// The first message of a PostgreSQL client.
public enum PostgreSQLFirstMessage: Sendable, Equatable {
    /// Asks the server whether it will speak TLS; a TLS ClientHello follows a yes.
    case sslRequest
    /// Asks for GSSAPI encryption.
    case gssEncRequest
    /// Cancels a query running on another connection.
    case cancelRequest
    /// Opens a session in protocol `major.minor` (3.0, or 3.2 from PostgreSQL 18).
    case startup(major: Int, minor: Int)
}
