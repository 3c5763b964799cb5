@testable import BordergateProxy

/// Writes TLS structures byte by byte and remembers where every length field it wrote sits, so
/// tests can corrupt each one in turn.
struct SniffTLSWriter {
    struct LengthField: CustomStringConvertible {
        let name: String
        let offset: Int
        let width: Int
        /// Whether the sniffer checks this length (as opposed to one inside an extension it skips).
        let checked: Bool
        var description: String { "\(name)@\(offset)/\(width)" }
    }

    var bytes: [UInt8] = []
    var lengthFields: [LengthField] = []

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: Int) { bytes += [UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
    mutating func append(_ more: [UInt8]) { bytes += more }

    /// Writes a `width`-byte length, then `body`, then patches the length to what `body` wrote.
    mutating func withLength(_ name: String, width: Int, checked: Bool = true, _ body: (inout SniffTLSWriter) -> Void) {
        let offset = bytes.count
        bytes += Array(repeating: 0, count: width)
        var inner = SniffTLSWriter()
        body(&inner)
        for field in inner.lengthFields {
            lengthFields.append(LengthField(name: field.name, offset: field.offset + bytes.count,
                                            width: field.width, checked: field.checked))
        }
        lengthFields.append(LengthField(name: name, offset: offset, width: width, checked: checked))
        bytes += inner.bytes
        var length = inner.bytes.count
        for index in stride(from: offset + width - 1, through: offset, by: -1) {
            bytes[index] = UInt8(length & 0xFF)
            length >>= 8
        }
    }
}

/// A ClientHello assembled from its parts, in one record or split across several.
struct TestClientHello: Sendable {
    struct Extension: Sendable {
        let type: Int
        let write: @Sendable (inout SniffTLSWriter) -> Void
    }

    var recordVersion = 0x0301
    var legacyVersion = 0x0303
    var random: [UInt8] = (0..<32).map { UInt8($0 &* 7 &+ 3) }
    var sessionID: [UInt8] = Array(repeating: 0xAB, count: 32)
    var cipherSuites = [0x1301, 0x1302, 0x1303, 0xC02F, 0xC030]
    var compressionMethods: [UInt8] = [0]
    /// Nil writes no extensions block at all, as a TLS 1.0 client may.
    var extensions: [Extension]? = []

    /// TLS 1.3 style: several extensions before server_name, supported_versions after it.
    static func tls13(serverName: String?) -> TestClientHello {
        var hello = TestClientHello()
        hello.extensions = [.ecPointFormats, .supportedGroups, .sessionTicket, .signatureAlgorithms]
            + (serverName.map { [.serverName($0)] } ?? [])
            + [.supportedVersions([0x0304, 0x0303]), .keyShare, .pskKeyExchangeModes]
        return hello
    }

    /// TLS 1.2 style: server_name first, no supported_versions, no session id.
    static func tls12(serverName: String?) -> TestClientHello {
        var hello = TestClientHello()
        hello.sessionID = []
        hello.extensions = (serverName.map { [.serverName($0)] } ?? [])
            + [.ecPointFormats, .supportedGroups, .signatureAlgorithms]
        return hello
    }

    /// The handshake message: type 1, 24-bit length, body.
    func handshakeWriter() -> SniffTLSWriter {
        var writer = SniffTLSWriter()
        writer.u8(1)
        writer.withLength("handshake", width: 3) { body in
            body.u16(legacyVersion)
            body.append(random)
            body.withLength("session id", width: 1) { $0.append(sessionID) }
            body.withLength("cipher suites", width: 2) { w in cipherSuites.forEach { w.u16($0) } }
            body.withLength("compression methods", width: 1) { $0.append(compressionMethods) }
            if let extensions {
                body.withLength("extensions", width: 2) { block in
                    for ext in extensions {
                        block.u16(ext.type)
                        block.withLength("extension \(ext.type)", width: 2) { ext.write(&$0) }
                    }
                }
            }
        }
        return writer
    }

    var handshake: [UInt8] { handshakeWriter().bytes }

    /// One record holding the whole ClientHello, with all length fields located.
    func singleRecordWriter() -> SniffTLSWriter {
        var writer = SniffTLSWriter()
        writer.u8(22)
        writer.u16(recordVersion)
        let message = handshakeWriter()
        writer.withLength("record", width: 2) { record in
            record.lengthFields = message.lengthFields
            record.bytes = message.bytes
        }
        return writer
    }

    var bytes: [UInt8] { singleRecordWriter().bytes }

    /// The ClientHello split into records after the given handshake offsets.
    func records(splittingAt cuts: [Int]) -> [UInt8] {
        let message = handshake
        var out: [UInt8] = []
        var start = 0
        for end in cuts.map({ min($0, message.count) }) + [message.count] where end > start {
            out += [22, UInt8(recordVersion >> 8), UInt8(recordVersion & 0xFF),
                    UInt8((end - start) >> 8), UInt8((end - start) & 0xFF)]
            out += message[start..<end]
            start = end
        }
        return out
    }
}

extension TestClientHello.Extension {
    /// server_name with one host_name entry (RFC 6066 §3).
    static func serverName(_ name: String) -> Self { serverNameEntries([name]) }

    /// A server_name list with one entry per name, all of `nameType`.
    static func serverNameEntries(nameType: UInt8 = 0, _ names: [String]) -> Self {
        Self(type: 0) { data in
            data.withLength("server name list", width: 2) { list in
                for name in names {
                    list.u8(nameType)
                    list.withLength("host name", width: 2) { $0.append(Array(name.utf8)) }
                }
            }
        }
    }

    static func supportedVersions(_ versions: [Int]) -> Self {
        Self(type: 43) { data in
            data.withLength("versions list", width: 1, checked: false) { list in versions.forEach { list.u16($0) } }
        }
    }

    static let ecPointFormats = Self(type: 11) { data in
        data.withLength("point formats", width: 1, checked: false) { $0.append([0, 1, 2]) }
    }
    static let supportedGroups = Self(type: 10) { data in
        data.withLength("groups", width: 2, checked: false) { list in [0x001D, 0x0017, 0x0018].forEach { list.u16($0) } }
    }
    static let sessionTicket = Self(type: 35) { _ in }
    static let signatureAlgorithms = Self(type: 13) { data in
        data.withLength("algorithms", width: 2, checked: false) { list in [0x0403, 0x0804, 0x0401].forEach { list.u16($0) } }
    }
    static let keyShare = Self(type: 51) { data in
        data.withLength("key shares", width: 2, checked: false) { list in
            list.u16(0x001D)
            list.withLength("key exchange", width: 2, checked: false) { $0.append(Array(repeating: 0x42, count: 32)) }
        }
    }
    static let pskKeyExchangeModes = Self(type: 45) { data in
        data.withLength("modes", width: 1, checked: false) { $0.append([1]) }
    }
    static func padding(_ count: Int) -> Self {
        Self(type: 21) { $0.append(Array(repeating: 0, count: count)) }
    }
    static func opaque(type: Int, _ bytes: [UInt8]) -> Self { Self(type: type) { $0.append(bytes) } }
}

/// Bytes from a hex string; whitespace ignored.
func sniffHex(_ text: String) -> [UInt8] {
    let digits = text.utf8.filter { !" \n\t".utf8.contains($0) }.map { digit -> UInt8 in
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: fatalError("not hex: \(digit)")
        }
    }
    precondition(digits.count % 2 == 0)
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

/// A small deterministic generator (SplitMix64) so fuzz runs repeat exactly.
struct SniffRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}
