@testable import BordergateInspection
import NIOCore
import XCTest

/// The PostgreSQL framer on captured-shape byte sequences: every split point, and lying lengths.
final class PGFramerTests: XCTestCase {
    /// A client's first bytes: SSLRequest, StartupMessage, then a Query and a Terminate.
    static let clientStream: [UInt8] = {
        var b: [UInt8] = [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F] // SSLRequest
        let params = Array("user\0alice\0database\0app\0\0".utf8)
        b += be32(8 + params.count) + [0, 3, 0, 0] + params
        let q = Array("SELECT 1\0".utf8)
        b += [UInt8(ascii: "Q")] + be32(4 + q.count) + q
        b += [UInt8(ascii: "X"), 0, 0, 0, 4]
        return b
    }()

    static func be32(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] }

    func frames(_ bytes: [UInt8], splitAt cut: Int, frontend: Bool = true) throws -> [PGFrame] {
        var untyped = frontend
        var buffer = ByteBuffer()
        var out: [PGFrame] = []
        for piece in [bytes[..<cut], bytes[cut...]] {
            buffer.writeBytes(piece)
            while let f = try PGMessageDecoder.next(from: &buffer, untyped: &untyped, side: "the client") { out.append(f) }
        }
        XCTAssertEqual(buffer.readableBytes, 0)
        return out
    }

    func testEverySplitGivesTheSameMessages() throws {
        let whole = try frames(Self.clientStream, splitAt: Self.clientStream.count)
        XCTAssertEqual(whole.map(\.type), [nil, nil, UInt8(ascii: "Q"), UInt8(ascii: "X")])
        for cut in 0...Self.clientStream.count {
            XCTAssertEqual(try frames(Self.clientStream, splitAt: cut), whole, "split at \(cut)")
        }
        // re-framed, the messages are the bytes that came
        var again: [UInt8] = []
        for f in whole { again += Array(f.encoded(allocator: ByteBufferAllocator()).readableBytesView) }
        XCTAssertEqual(again, Self.clientStream)
    }

    func testLyingLengthsEndTheStream() {
        var typed = false
        for bad: [UInt8] in [[UInt8(ascii: "D"), 0, 0, 0, 3], [UInt8(ascii: "D"), 0x7F, 0xFF, 0xFF, 0xFF], [UInt8(ascii: "D"), 0xFF, 0xFF, 0xFF, 0xFF]] {
            var buffer = ByteBuffer(bytes: bad)
            XCTAssertThrowsError(try PGMessageDecoder.next(from: &buffer, untyped: &typed, side: "the server")) {
                XCTAssertTrue("\($0)".contains("length"), "\($0)")
            }
        }
        var untyped = true
        var startup = ByteBuffer(bytes: [0, 0x10, 0, 0, 0, 3, 0, 0]) // 1 MiB startup
        XCTAssertThrowsError(try PGMessageDecoder.next(from: &startup, untyped: &untyped, side: "the client"))
    }

    func testNothingIsAllocatedByTheAnnouncedLength() throws {
        // 1 GiB announced, 5 bytes present: the framer waits, holding only what came
        var typed = false
        var buffer = ByteBuffer(bytes: [UInt8(ascii: "D"), 0x40, 0, 0, 0])
        XCTAssertNil(try PGMessageDecoder.next(from: &buffer, untyped: &typed, side: "the server"))
        XCTAssertEqual(buffer.readableBytes, 5)
    }

    func testCountsInsideAMessageAreChecked() throws {
        // a RowDescription claiming 1000 columns in 2 bytes
        XCTAssertThrowsError(try PostgreSQLRelay.rowDescription(ByteBuffer(bytes: [0x03, 0xE8])))
        // one column, well formed
        var body = ByteBuffer()
        body.writeInteger(Int16(1)); body.writeNullTerminated("email")
        body.writeInteger(Int32(0)); body.writeInteger(Int16(0)); body.writeInteger(UInt32(25))
        body.writeInteger(Int16(-1)); body.writeInteger(Int32(-1)); body.writeInteger(Int16(0))
        let cols = try PostgreSQLRelay.rowDescription(body)
        XCTAssertEqual(cols.map(\.name), ["email"])
        XCTAssertEqual(cols.map(\.typeOID), [25])
    }

    func testErrorResponseAndReadyForQuery() {
        let a = ByteBufferAllocator()
        var e = PGMessages.error(code: "42501", message: "no", allocator: a)
        XCTAssertEqual(e.readInteger(as: UInt8.self), UInt8(ascii: "E"))
        XCTAssertEqual(Int(e.readInteger(as: UInt32.self)!), e.readableBytes + 4)
        let fields = PGMessages.fields(of: e)
        XCTAssertEqual(fields[UInt8(ascii: "C")], "42501")
        XCTAssertEqual(Array(PGMessages.readyForQuery(UInt8(ascii: "I"), allocator: a).readableBytesView), [0x5A, 0, 0, 0, 5, 0x49])
    }

    /// Random and mutated streams, cut at random points: the framer either yields messages whose
    /// re-framing gives back the bytes it consumed, waits, or throws one line; it never traps.
    func testRandomStreamsNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        for round in 0..<3000 {
            var bytes = Self.clientStream
            for _ in 0..<Int.random(in: 0...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if round % 3 == 0 { bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
            var untyped = round % 2 == 0
            var buffer = ByteBuffer()
            var consumed: [UInt8] = []
            var rest = bytes[...]
            do {
                while !rest.isEmpty {
                    let n = Int.random(in: 1...max(1, rest.count), using: &rng)
                    buffer.writeBytes(rest.prefix(n))
                    rest = rest.dropFirst(n)
                    while let f = try PGMessageDecoder.next(from: &buffer, untyped: &untyped, side: "the peer") {
                        consumed += Array(f.encoded(allocator: ByteBufferAllocator()).readableBytesView)
                        _ = try? PostgreSQLRelay.rowDescription(f.body)
                        _ = PGMessages.fields(of: f.body)
                    }
                }
                XCTAssertEqual(consumed, Array(bytes.prefix(consumed.count)))
            } catch {
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
    }
}
