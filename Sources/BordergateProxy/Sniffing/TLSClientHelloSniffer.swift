/// Reads a TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and its server_name extension
/// (RFC 6066 §3).
///
/// The ClientHello may span several consecutive handshake records; they are reassembled as long
/// as the whole message ends within `ProtocolSniffer.maximumHeadBytes` bytes of input. A ClientHello
/// that does not is reported as malformed ("ClientHello over 16 KiB") rather than waited for.
/// Bytes after the record that completes the ClientHello (early data, a compatibility
/// ChangeCipherSpec) are not looked at.
enum TLSClientHelloSniffer {
    static let handshakeRecordType: UInt8 = 22
    static let clientHelloType: UInt8 = 1
    static let recordHeaderLength = 5
    static let handshakeHeaderLength = 4
    /// RFC 8446 §5.2: no record is longer than 2^14 + 256 bytes.
    static let maximumRecordLength = (1 << 14) + 256
    static let serverNameExtension = 0
    static let hostNameType: UInt8 = 0

    static let overCap = SniffedProtocol.malformed("ClientHello over 16 KiB")

    /// `bytes` starts with 0x16 and holds at most `ProtocolSniffer.maximumHeadBytes` bytes.
    static func sniff(_ bytes: [UInt8]) -> SniffedProtocol {
        var progress = Progress()
        return progress.advance(bytes)
    }

    /// How far the reassembly has got, so that bytes arriving later are looked at once: each
    /// ``advance(_:)`` is given everything received so far (the earlier bytes unchanged) and
    /// resumes where the last one stopped. The answer is the one ``sniff(_:)`` would give.
    struct Progress {
        /// The handshake message reassembled so far.
        private var message: [UInt8] = []
        /// Header plus body length, once the handshake header is in.
        private var messageEnd: Int?
        /// Where the record being read starts.
        private var offset = 0
        /// The end of the record at `offset`, once its header has been read and checked.
        private var recordEnd: Int?
        /// Input up to here has been appended to `message`.
        private var appended = 0
        /// Bytes looked at, over every call (for tests that bound the work).
        private(set) var examined = 0

        mutating func advance(_ bytes: [UInt8]) -> SniffedProtocol {
            let cap = ProtocolSniffer.maximumHeadBytes
            /// Answers what to say when the input must reach `end` bytes but does not (yet).
            func short(of end: Int) -> SniffedProtocol? {
                if end > cap { return overCap }
                if end > bytes.count { return .needMoreBytes }
                return nil
            }

            // The first record header decides TLS or not from as few bytes as it can.
            if let answer = short(of: 2) { return answer }
            guard bytes[1] == 3 else { return .other }
            if let answer = short(of: 3) { return answer }
            guard bytes[2] <= 4 else { return .other }

            // Reassemble the handshake message from consecutive handshake records.
            while messageEnd.map({ message.count < $0 }) ?? true {
                let end: Int
                if let recordEnd {
                    end = recordEnd
                } else {
                    if let answer = short(of: offset + recordHeaderLength) { return answer }
                    examined += recordHeaderLength
                    if offset > 0 {
                        guard bytes[offset] == handshakeRecordType else {
                            return .malformed("ClientHello interrupted by another record type")
                        }
                        guard bytes[offset + 1] == 3, bytes[offset + 2] <= 4 else {
                            return .malformed("bad record version")
                        }
                    }
                    let recordLength = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
                    guard recordLength > 0 else { return .malformed("empty handshake record") }
                    guard recordLength <= maximumRecordLength else { return .malformed("record longer than 2^14+256") }
                    end = offset + recordHeaderLength + recordLength
                    recordEnd = end
                    appended = offset + recordHeaderLength
                }

                let available = min(end, bytes.count)
                if available > appended {
                    message.append(contentsOf: bytes[appended..<available])
                    examined += available - appended
                    appended = available
                }

                // Decide what can be decided before the whole message is in.
                if let type = message.first, type != clientHelloType {
                    return .malformed("handshake is not a ClientHello")
                }
                if messageEnd == nil, message.count >= handshakeHeaderLength {
                    let bodyLength = Int(message[1]) << 16 | Int(message[2]) << 8 | Int(message[3])
                    messageEnd = handshakeHeaderLength + bodyLength
                    if recordHeaderLength + handshakeHeaderLength + bodyLength > cap { return overCap }
                }
                if let answer = short(of: end) { return answer }
                offset = end
                recordEnd = nil
            }
            guard let end = messageEnd, message.count == end else {
                return .malformed("data after ClientHello in its record")
            }
            examined += message.count
            return parseClientHello(SniffByteReader(message, from: handshakeHeaderLength, to: end))
        }
    }

    /// Walks a complete ClientHello body, checking every length against its container.
    static func parseClientHello(_ body: SniffByteReader) -> SniffedProtocol {
        var body = body
        guard let legacyVersion = body.readUInt16() else { return .malformed("ClientHello too short") }
        guard legacyVersion >= 0x0300, legacyVersion <= 0x0304 else {
            return .malformed("bad ClientHello version")
        }
        guard body.skip(32) else { return .malformed("ClientHello too short") }
        guard let sessionIDLength = body.readUInt8(), sessionIDLength <= 32, body.skip(Int(sessionIDLength)) else {
            return .malformed("bad session id length")
        }
        guard let cipherSuitesLength = body.readUInt16(), cipherSuitesLength >= 2, cipherSuitesLength % 2 == 0,
              body.skip(cipherSuitesLength) else {
            return .malformed("bad cipher suites length")
        }
        guard let compressionLength = body.readUInt8(), compressionLength >= 1, body.skip(Int(compressionLength)) else {
            return .malformed("bad compression methods length")
        }
        // TLS 1.2 and earlier may end the ClientHello here: no extensions, so no server name.
        if body.isAtEnd { return .tls(serverName: nil) }
        guard let extensionsLength = body.readUInt16(), extensionsLength == body.remaining,
              var extensions = body.readChild(extensionsLength) else {
            return .malformed("bad extensions length")
        }

        var seen: Set<Int> = []
        var serverName: String?
        while !extensions.isAtEnd {
            guard let type = extensions.readUInt16(), let length = extensions.readUInt16(),
                  let data = extensions.readChild(length) else {
                return .malformed("bad extension length")
            }
            // RFC 8446 §4.2: no more than one extension of a type.
            guard seen.insert(type).inserted else { return .malformed("duplicate extension") }
            if type == serverNameExtension {
                switch parseServerName(data) {
                case .success(let name): serverName = name
                case .failure(let problem): return .malformed(problem.reason)
                }
            }
        }
        return .tls(serverName: serverName)
    }

    struct Problem: Error { let reason: String }

    /// The host_name from a server_name extension body (RFC 6066 §3).
    static func parseServerName(_ data: SniffByteReader) -> Result<String, Problem> {
        var data = data
        guard let listLength = data.readUInt16(), listLength > 0, listLength == data.remaining else {
            return .failure(Problem(reason: "bad server name list length"))
        }
        var hostName: String?
        while !data.isAtEnd {
            guard let nameType = data.readUInt8() else { return .failure(Problem(reason: "bad server name entry")) }
            // Only host_name is defined; the layout of any other type is unknown, so it cannot be skipped.
            guard nameType == hostNameType else { return .failure(Problem(reason: "unknown server name type")) }
            guard let nameLength = data.readUInt16(), let name = data.readBytes(nameLength) else {
                return .failure(Problem(reason: "bad server name length"))
            }
            guard hostName == nil else { return .failure(Problem(reason: "two host names in server_name")) }
            guard let normalized = SniffedHostname.normalize(name) else {
                return .failure(Problem(reason: "bad server name"))
            }
            hostName = normalized
        }
        guard let hostName else { return .failure(Problem(reason: "bad server name list length")) }
        return .success(hostName)
    }
}
