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
    /// The first message of a PostgreSQL client (it carries no hostname).
    case postgresql(PostgreSQLFirstMessage)
    /// None of the above: opaque, relayed without a hostname.
    case other
    /// Claims to be TLS or HTTP but lies; one short reason.
    case malformed(String)
}

/// Decides from the first bytes of a connection whether it is a TLS ClientHello, an HTTP/1.x
/// request head, a PostgreSQL client's first message, or something else, and pulls out the
/// hostname the client asks for.
///
/// Call it again with all bytes received so far whenever more arrive, until it answers something
/// other than `.needMoreBytes`, or feed the new bytes to an ``IncrementalSniffer``, which looks
/// at each byte once. It looks at no more than `maximumHeadBytes` bytes.
public enum ProtocolSniffer {
    /// The proxy never buffers more than this before deciding: one full TLS plaintext record
    /// (2^14 bytes of payload plus its 5-byte header), which is also the cap on an HTTP request head.
    public static let maximumHeadBytes = 16 * 1024 + 5

    public static func sniff<C: Collection>(_ bytes: C) -> SniffedProtocol where C.Element == UInt8 {
        var sniffer = IncrementalSniffer()
        return sniffer.feed(bytes)
    }
}

/// ``ProtocolSniffer`` for bytes that arrive a piece at a time: it keeps the head and how far each
/// sniffer got, so a head sent one byte at a time costs work in proportion to its length, not to
/// its square (every piece would otherwise re-read everything before it).
public struct IncrementalSniffer: Sendable {
    /// Which sniffer the first byte chose. The progress of each lives in a stored property of its
    /// own, mutated in place (an enum payload would be copied on every feed).
    private enum Reader {
        case undecided, tls, http, postgresql, other
    }

    /// What has arrived, up to `ProtocolSniffer.maximumHeadBytes`.
    public private(set) var head: [UInt8] = []
    /// The answer so far.
    public private(set) var result = SniffedProtocol.needMoreBytes
    private var reader = Reader.undecided
    private var tls = TLSClientHelloSniffer.Progress()
    private var http = HTTPRequestHeadSniffer.Progress()

    public init() {}

    /// Bytes looked at so far, over every ``feed(_:)`` (for tests that bound the work).
    public var bytesExamined: Int { head.count + tls.examined + http.examined }

    /// Adds what arrived and answers what all of it says so far. Once the answer is other than
    /// `.needMoreBytes` it stays, and later bytes are not kept.
    public mutating func feed<C: Collection>(_ bytes: C) -> SniffedProtocol where C.Element == UInt8 {
        guard case .needMoreBytes = result else { return result }
        let room = ProtocolSniffer.maximumHeadBytes - head.count
        if bytes.withContiguousStorageIfAvailable({ head.append(contentsOf: $0.prefix(room)) }) == nil {
            head.append(contentsOf: bytes.prefix(room))
        }
        guard let first = head.first else { return result }
        if reader == .undecided {
            switch first {
            case TLSClientHelloSniffer.handshakeRecordType: reader = .tls
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): reader = .http
            case 0: reader = .postgresql
            default: reader = .other
            }
        }
        switch reader {
        case .undecided: break
        case .tls: result = tls.advance(head)
        case .http: result = http.advance(head)
        case .postgresql: result = PostgreSQLStartupSniffer.sniff(head) // at most 8 bytes are looked at
        case .other: result = .other
        }
        return result
    }
}
