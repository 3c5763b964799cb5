// Plain Swift over byte collections: no NIO, no Foundation, so this folder compiles on its own.

/// What the first bytes a client sent say about the protocol it speaks.
public enum SniffedProtocol: Sendable, Equatable {
    /// Cannot tell yet; the caller reads more (and caps the wait itself). Never returned once
    /// `ProtocolSniffer.maximumHeadBytes` bytes are available.
    case needMoreBytes
    /// A TLS ClientHello; `serverName` from the server_name extension (host_name type), lower-cased.
    case tls(serverName: String?)
    /// A complete HTTP/1.0 or HTTP/1.1 request head; `host` lower-cased, port and brackets stripped,
    /// from the target when it is in absolute or authority form, else from the Host header.
    case http(host: String?, method: String, target: String)
    /// Neither TLS nor HTTP/1.x: opaque, relayed without a hostname.
    case other
    /// Claims to be TLS or HTTP but lies; one short reason.
    case malformed(String)
}

/// Decides from the first bytes of a connection whether it is a TLS ClientHello, an HTTP/1.x
/// request head, or something else, and pulls out the hostname the client asks for.
///
/// Call it again with all bytes received so far whenever more arrive, until it answers something
/// other than `.needMoreBytes`. It looks at no more than `maximumHeadBytes` bytes.
public enum ProtocolSniffer {
    /// The proxy never buffers more than this before deciding: one full TLS plaintext record
    /// (2^14 bytes of payload plus its 5-byte header), which is also the cap on an HTTP request head.
    public static let maximumHeadBytes = 16 * 1024 + 5

    public static func sniff<C: Collection>(_ bytes: C) -> SniffedProtocol where C.Element == UInt8 {
        let head = bytes.withContiguousStorageIfAvailable { Array($0.prefix(maximumHeadBytes)) }
            ?? Array(bytes.prefix(maximumHeadBytes))
        guard let first = head.first else { return .needMoreBytes }
        switch first {
        case TLSClientHelloSniffer.handshakeRecordType:
            return TLSClientHelloSniffer.sniff(head)
        case UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return HTTPRequestHeadSniffer.sniff(head)
        default:
            return .other
        }
    }
}
