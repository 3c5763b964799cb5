import Foundation
import BordergateMasking
import CZlib
import NIOCore
import NIOHTTP1

/// What a response's headers say about masking its body.
enum BodyKind: Equatable {
    /// Text the detectors run over.
    case text
    /// JSON or NDJSON: field rules apply by key as well.
    case json
    /// No Content-Type: text or not is decided from the first bytes.
    case unknown
    /// Binary (images, archives, protobuf): relayed untouched; the exchange notes it.
    case binary(String)

    init(contentType: String?) {
        guard let raw = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(),
              !raw.isEmpty else {
            self = .unknown
            return
        }
        let parts = raw.split(separator: "/", maxSplits: 1).map(String.init)
        let type = parts[0], subtype = parts.count > 1 ? parts[1] : ""
        if subtype == "json" || subtype.hasSuffix("+json") || ["x-ndjson", "ndjson", "jsonl", "x-jsonlines", "json-seq"].contains(subtype) {
            self = .json
        } else if type == "text" || subtype == "xml" || subtype.hasSuffix("+xml")
                    || ["x-www-form-urlencoded", "csv", "javascript", "x-javascript", "yaml", "x-yaml", "graphql", "sql", "x-sh"].contains(subtype) {
            self = .text
        } else {
            self = .binary(raw)
        }
    }

    /// Whether a body without a Content-Type is text, from its first bytes: UTF-8 without NUL
    /// (a multi-byte character cut at the end of the sample is fine).
    static func looksLikeText(_ sample: ByteBuffer) -> Bool {
        let bytes = sample.readableBytesView.prefix(1024)
        if bytes.contains(0) { return false }
        var end = bytes.endIndex
        // Drop an incomplete UTF-8 sequence at the end of the sample (at most 3 bytes).
        var back = 0
        while back < 3, end > bytes.startIndex, bytes[end - 1] & 0xC0 == 0x80 { end -= 1; back += 1 }
        if end > bytes.startIndex, bytes[end - 1] >= 0xC0 { end -= 1 }
        return String(validating: bytes[bytes.startIndex..<end], as: UTF8.self) != nil
    }
}

/// The body codings Bordergate can take apart to mask (zlib, through compress-nio).
enum BodyCoding: Equatable {
    case identity, gzip, deflate
    /// One it cannot decode (br, zstd, several stacked): the body cannot be masked.
    case unsupported(String)

    init(contentEncoding: [String]) {
        let codings = contentEncoding.flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty && $0 != "identity" }
        switch codings {
        case []: self = .identity
        case ["gzip"], ["x-gzip"]: self = .gzip
        case ["deflate"]: self = .deflate
        default: self = .unsupported(codings.joined(separator: ", "))
        }
    }
}

/// A streaming zlib inflater (gzip or zlib-wrapped deflate) that drains everything it can from
/// each input: a small wrapper over zlib, which is the library here.
final class Inflater {
    private var stream = z_stream()
    private var ended = false
    private var output = [UInt8](repeating: 0, count: 64 * 1024)

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(gzip: Bool) throws {
        // 15: the largest window; +16: expect a gzip header and trailer.
        guard bg_inflate_init2(&stream, gzip ? 15 + 16 : 15) == Z_OK else { throw Failure(description: "cannot start zlib") }
    }

    deinit { inflateEnd(&stream) }

    /// Inflates `input`, handing each piece of output to `emit`. Bytes after the end of the
    /// compressed stream are ignored.
    func inflate(_ input: ByteBufferView, emit: ([UInt8]) -> Void) throws {
        guard !ended, !input.isEmpty else { return }
        var rest = Array(input)
        try rest.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress
            stream.avail_in = UInt32(inp.count)
            defer { stream.next_in = nil; stream.avail_in = 0 }
            repeat {
                let (rc, produced) = output.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    let rc = CZlib.inflate(&stream, Z_NO_FLUSH)
                    return (rc, out.count - Int(stream.avail_out))
                }
                if produced > 0 { emit(Array(output[0..<produced])) }
                switch rc {
                case Z_OK: continue
                case Z_STREAM_END: ended = true; return
                case Z_BUF_ERROR: return // needs more input
                default:
                    let why = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                    throw Failure(description: "the compressed body is corrupt (zlib: \(why))")
                }
            } while stream.avail_in > 0 || stream.avail_out == 0
        }
    }

    /// Whether the compressed stream was complete.
    var isComplete: Bool { ended }
}

/// Masks one response body on its way to the tool: decodes gzip/deflate (the tool then gets it
/// as identity), runs the streaming masker, and hands back what is decided so far. Bounded: the
/// masker holds back at most what it cannot decide yet, the inflater one window.
struct BodyMasker {
    private var text: MaskingStream?
    private var json: JSONMaskingStream?
    private let inflater: Inflater?

    init(engine: MaskingEngine, json isJSON: Bool, coding: BodyCoding) throws {
        if isJSON { json = engine.makeJSONStream() } else { text = engine.makeStream() }
        switch coding {
        case .gzip: inflater = try Inflater(gzip: true)
        case .deflate: inflater = try Inflater(gzip: false)
        case .identity, .unsupported: inflater = nil
        }
    }

    var counts: MaskCounts { json?.counts ?? text?.counts ?? MaskCounts() }

    /// Masks the next piece of the body as it came off the wire.
    mutating func feed(_ piece: ByteBuffer) throws -> [UInt8] {
        guard let inflater else { return mask(piece.readableBytesView) }
        var out: [UInt8] = []
        var plain: [[UInt8]] = []
        try inflater.inflate(piece.readableBytesView) { plain.append($0) }
        for p in plain { out += mask(p) }
        return out
    }

    /// The end of the body: what the masker held back. Throws when a compressed body stopped
    /// before its end (its last bytes would be missing from what was masked).
    mutating func finish() throws -> [UInt8] {
        if let inflater, !inflater.isComplete {
            throw Inflater.Failure(description: "the compressed body ends before its compressed stream does")
        }
        if json != nil { return json!.finish() }
        return text!.finish()
    }

    private mutating func mask(_ bytes: some Collection<UInt8>) -> [UInt8] {
        if bytes.isEmpty { return [] }
        if json != nil { return json!.feed(bytes) }
        return text!.feed(bytes)
    }
}
