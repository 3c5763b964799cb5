import NIOCore

// The PostgreSQL frontend/backend protocol, version 3 (PostgreSQL documentation, "Frontend/Backend
// Protocol"), framed by hand. Swift's PostgreSQL libraries (PostgresNIO and its wire module) are
// clients: they speak for one side, hide the messages a transparent proxy must relay as they
// came (authentication, messages they do not model), and re-encode what they parse. Here every
// message is cut out of the stream by its own length, checked, and passed on byte for byte unless
// it is masked, and then re-framed with the length of what it has become.

/// One message as the framer cut it out of the stream.
struct PGFrame: Equatable {
    /// The type byte; nil for the untyped messages a client sends first (StartupMessage,
    /// SSLRequest, GSSENCRequest, CancelRequest), whose body starts with their Int32 code.
    var type: UInt8?
    /// The bytes after the length.
    var body: ByteBuffer

    /// The message as it goes on the wire (its length recomputed from the body).
    func encoded(allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: body.readableBytes + 5)
        write(into: &out)
        return out
    }

    func write(into out: inout ByteBuffer) {
        if let type { out.writeInteger(type) }
        out.writeInteger(UInt32(body.readableBytes + 4))
        out.writeImmutableBuffer(body)
    }
}

/// A stream that is not the PostgreSQL protocol: the connection ends, with this as the reason.
struct PGProtocolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Cuts one direction of a connection into messages. Lengths are validated before anything is
/// waited for: a length below the minimum or above ``maximumLength`` ends the connection at once,
/// and nothing is ever allocated by a count the peer sent (the buffer grows only with bytes that
/// arrived). One message (a row, at most 1 GiB like PostgreSQL's own limit on a field) is held at a
/// time; results stream message by message.
struct PGMessageDecoder: ByteToMessageDecoder {
    typealias InboundOut = PGFrame

    /// PostgreSQL refuses a value of more than 1 GiB; a message longer than that is not one it sent.
    static let maximumLength = 1 << 30
    /// The server's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
    static let maximumStartupLength = 10_000

    /// Frontend: the first messages are untyped until the StartupMessage (an SSLRequest or
    /// GSSENCRequest answered `N` is followed by another untyped one).
    private(set) var untyped: Bool
    let side: String
    let maximumLength: Int

    init(frontend: Bool, maximumLength: Int = PGMessageDecoder.maximumLength) {
        untyped = frontend
        side = frontend ? "the client" : "the server"
        self.maximumLength = maximumLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(from: &buffer, untyped: &untyped, side: side, maximumLength: maximumLength) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0, seenEOF {
            throw PGProtocolError("\(side) closed the connection inside a message (\(buffer.readableBytes) bytes of it arrived)")
        }
        return .needMoreData
    }

    /// The next whole message in `buffer`, consumed; nil when it has not all arrived. Pure, so the
    /// tests and the fuzzer drive it without a channel.
    static func next(from buffer: inout ByteBuffer, untyped: inout Bool, side: String,
                     maximumLength: Int = maximumLength) throws -> PGFrame? {
        let headerLength = untyped ? 4 : 5
        guard buffer.readableBytes >= headerLength else { return nil }
        let start = buffer.readerIndex
        let type: UInt8? = untyped ? nil : buffer.getInteger(at: start, as: UInt8.self)!
        let length = Int(buffer.getInteger(at: start + (untyped ? 0 : 1), as: UInt32.self)!)
        if untyped {
            guard (8...maximumStartupLength).contains(length) else {
                throw PGProtocolError("\(side) sent a first message of length \(length); expected 8 to \(maximumStartupLength) bytes")
            }
        } else {
            guard length >= 4 else {
                throw PGProtocolError("\(side) sent a '\(printable(type!))' message of length \(length), less than its own length field")
            }
            guard length <= maximumLength else {
                throw PGProtocolError("\(side) sent a '\(printable(type!))' message of length \(length), more than the \(maximumLength >> 20) MiB limit")
            }
        }
        let total = length + (untyped ? 0 : 1)
        guard buffer.readableBytes >= total else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        let body = buffer.readSlice(length: length - 4)!
        if untyped, length >= 8, let code = body.getInteger(at: body.readerIndex, as: UInt32.self), code >> 16 == 3 {
            untyped = false // a StartupMessage: typed messages follow
        }
        return PGFrame(type: type, body: body)
    }

    static func printable(_ type: UInt8) -> String {
        (0x21...0x7E).contains(type) ? String(UnicodeScalar(type)) : "0x" + String(type, radix: 16)
    }
}

/// Reading the fields of a message body, each read bounded by the body itself: a count or a length
/// inside a message that points past its end is a lie, and the connection ends.
struct PGReader {
    var buffer: ByteBuffer
    let what: String

    init(_ body: ByteBuffer, _ what: String) {
        buffer = body
        self.what = what
    }

    var remaining: Int { buffer.readableBytes }

    mutating func int16() throws -> Int {
        guard let v = buffer.readInteger(as: Int16.self) else { throw short("an Int16") }
        return Int(v)
    }

    mutating func int32() throws -> Int {
        guard let v = buffer.readInteger(as: Int32.self) else { throw short("an Int32") }
        return Int(v)
    }

    mutating func uint32() throws -> UInt32 {
        guard let v = buffer.readInteger(as: UInt32.self) else { throw short("an Int32") }
        return v
    }

    mutating func byte() throws -> UInt8 {
        guard let v = buffer.readInteger(as: UInt8.self) else { throw short("a byte") }
        return v
    }

    /// A NUL-terminated string.
    mutating func cString() throws -> String {
        guard let nul = buffer.readableBytesView.firstIndex(of: 0) else { throw short("a string's terminating NUL") }
        let s = buffer.readString(length: nul - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        return s
    }

    mutating func bytes(_ n: Int) throws -> ByteBuffer {
        guard n >= 0, let s = buffer.readSlice(length: n) else { throw short("\(n) bytes") }
        return s
    }

    /// A count of following items, each at least `minimumSize` bytes: checked against what is left
    /// before anything is allocated or looped over.
    mutating func count(minimumSize: Int) throws -> Int {
        let n = try int16()
        guard n >= 0, n * minimumSize <= remaining else {
            throw PGProtocolError("\(what) says it holds \(n) items, more than its \(remaining) remaining bytes can")
        }
        return n
    }

    func short(_ thing: String) -> PGProtocolError {
        PGProtocolError("\(what) ends before \(thing) its contents announce")
    }
}

/// Messages Bordergate writes itself.
enum PGMessages {
    /// ErrorResponse (or NoticeResponse with `type: "N"`): severity, SQLSTATE, message.
    static func error(code: String, message: String, severity: String = "ERROR", allocator: ByteBufferAllocator) -> ByteBuffer {
        var body = allocator.buffer(capacity: message.utf8.count + 32)
        for (field, value) in [("S", severity), ("V", severity), ("C", code), ("M", message)] {
            body.writeInteger(UInt8(ascii: field.unicodeScalars.first!))
            body.writeString(value)
            body.writeInteger(UInt8(0))
        }
        body.writeInteger(UInt8(0))
        return PGFrame(type: UInt8(ascii: "E"), body: body).encoded(allocator: allocator)
    }

    /// ReadyForQuery with the transaction status: `I` idle, `T` in a block, `E` in a failed block.
    static func readyForQuery(_ status: UInt8, allocator: ByteBufferAllocator) -> ByteBuffer {
        var body = allocator.buffer(capacity: 1)
        body.writeInteger(status)
        return PGFrame(type: UInt8(ascii: "Z"), body: body).encoded(allocator: allocator)
    }

    /// The fields of an ErrorResponse or NoticeResponse, by their code letter.
    static func fields(of body: ByteBuffer) -> [UInt8: String] {
        var r = PGReader(body, "an ErrorResponse")
        var out: [UInt8: String] = [:]
        while let code = try? r.byte(), code != 0, let value = try? r.cString() { out[code] = value }
        return out
    }
}
