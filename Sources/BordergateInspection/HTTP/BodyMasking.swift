import Foundation
import BordergateMasking
import CZlib
import NIOCore
import NIOHTTP1

/// What a response's headers say about masking its body.
enum BodyKind: Hashable {
    /// Text the detectors run over.
    case text
    /// JSON or NDJSON: field rules apply by key as well.
    case json
    /// No Content-Type: text or not is decided from the first bytes.
    case unknown
    /// Binary (images, archives, protobuf): relayed untouched; the exchange notes it.
    case binary(String)
    /// Text the detectors cannot read as it is (UTF-16, UTF-32): `on-error` decides.
    case unmaskable(String)

    /// From every Content-Type header: several that disagree are decided from the bytes.
    init(contentTypes: [String]) {
        let kinds = Set(contentTypes.map { BodyKind(contentType: $0) })
        self = kinds.count == 1 ? kinds.first! : .unknown
    }

    init(contentType: String?) {
        guard let full = contentType?.lowercased(),
              let raw = full.split(separator: ";").first?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else {
            self = .unknown
            return
        }
        let parts = raw.split(separator: "/", maxSplits: 1).map(String.init)
        let type = parts[0], subtype = parts.count > 1 ? parts[1] : ""
        let charset = full.split(separator: ";").dropFirst().map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.hasPrefix("charset=") }.map { $0.dropFirst(8).trimmingCharacters(in: CharacterSet(charactersIn: "\"' ")) }
        if let charset, charset.hasPrefix("utf-16") || charset.hasPrefix("utf-32") || charset.hasPrefix("ucs") {
            self = .unmaskable("charset \(charset)")
        } else if subtype == "json" || subtype.hasSuffix("+json") || subtype.hasPrefix("x-amz-json")
                    || ["x-json", "x-ndjson", "ndjson", "jsonl", "x-jsonlines", "json-seq"].contains(subtype) {
            self = .json
        } else if type == "text" || type == "multipart" || type == "message" || subtype == "xml" || subtype.hasSuffix("+xml")
                    || ["x-www-form-urlencoded", "csv", "javascript", "x-javascript", "yaml", "x-yaml", "graphql", "sql", "x-sh"].contains(subtype) {
            // multipart and message bodies are masked as text: a binary part may be altered, but
            // a text part is never let through unmasked
            self = .text
        } else {
            self = .binary(raw)
        }
    }

    /// Whether a body without a Content-Type is text, from its first bytes: no NUL and few control
    /// bytes. Any 8-bit text (UTF-8, Latin-1) counts: its ASCII values are what the detectors read,
    /// and treating it as binary would let them through.
    static func looksLikeText(_ sample: ByteBuffer) -> Bool {
        let bytes = sample.readableBytesView.prefix(1024)
        if bytes.contains(0) { return false }
        let control = bytes.lazy.filter { $0 < 0x20 && $0 != 9 && $0 != 10 && $0 != 13 && $0 != 12 }.count
        return control * 10 <= bytes.count
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
        default: self = .unsupported("content-encoding " + codings.joined(separator: ", "))
        }
    }
}

/// A streaming zlib inflater (gzip or zlib-wrapped deflate) that drains everything it can from
/// each input: a small wrapper over zlib, which is the library here.
final class Inflater {
    private var stream = z_stream()
    private let gzip: Bool
    private var ended = false
    private var started = false
    private var produced = false
    private var triedRaw = false
    private var output = [UInt8](repeating: 0, count: 64 * 1024)
    /// Inflated bytes one piece of input may yield; past it the body is taken for a
    /// decompression bomb (it would be held in memory at once).
    static let expansionLimit = 32 << 20

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(gzip: Bool) throws {
        self.gzip = gzip
        try start(windowBits: gzip ? 15 + 16 : 15) // 15: the largest window; +16: a gzip header and trailer
    }

    private func start(windowBits: Int32) throws {
        guard bg_inflate_init2(&stream, windowBits) == Z_OK else { throw Failure(description: "cannot start zlib") }
    }

    deinit { inflateEnd(&stream) }

    /// Inflates `input`, handing each piece of output to `emit`. A second gzip member after the
    /// first is inflated too; other bytes after the end of the compressed stream are ignored.
    func inflate(_ input: ByteBufferView, emit: ([UInt8]) -> Void) throws {
        guard !input.isEmpty else { return }
        var rest = Array(input)
        var yielded = 0
        var offset = 0
        var restarted = false
        while offset < rest.count {
            restarted = false
            if ended {
                // another gzip member (1f 8b) continues the body; anything else is trailing garbage
                guard gzip, rest.count - offset >= 2, rest[offset] == 0x1f, rest[offset + 1] == 0x8b else { return }
                inflateReset(&stream)
                ended = false
            }
            started = true
            let consumed = try rest.withUnsafeMutableBufferPointer { inp -> Int in
                stream.next_in = inp.baseAddress! + offset
                stream.avail_in = UInt32(inp.count - offset)
                defer { stream.next_in = nil; stream.avail_in = 0 }
                repeat {
                    let (rc, n) = output.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
                        stream.next_out = out.baseAddress
                        stream.avail_out = UInt32(out.count)
                        let rc = CZlib.inflate(&stream, Z_NO_FLUSH)
                        return (rc, out.count - Int(stream.avail_out))
                    }
                    if n > 0 {
                        produced = true
                        yielded += n
                        guard yielded <= Self.expansionLimit else {
                            throw Failure(description: "the compressed body expands past \(Self.expansionLimit >> 20) MiB from \(input.count) bytes (a decompression bomb?)")
                        }
                        emit(Array(output[0..<n]))
                    }
                    switch rc {
                    case Z_OK: continue
                    case Z_STREAM_END:
                        ended = true
                        return inp.count - Int(stream.avail_in)
                    case Z_BUF_ERROR:
                        return inp.count - Int(stream.avail_in)
                    case Z_DATA_ERROR where !gzip && !produced && !triedRaw:
                        // "deflate" sent as a raw stream without the zlib header: start again raw
                        inflateEnd(&stream)
                        stream = z_stream()
                        triedRaw = true
                        restarted = true
                        try start(windowBits: -15)
                        return 0 // from the start of this input: nothing of it was inflated
                    default:
                        let why = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                        throw Failure(description: "the compressed body is corrupt (zlib: \(why))")
                    }
                } while stream.avail_in > 0 || stream.avail_out == 0
                return inp.count
            }
            if restarted { offset = 0; continue }
            if consumed == offset, !ended { break } // zlib needs more input
            offset = consumed
        }
    }

    /// Whether the compressed stream was complete (or never began: an empty body).
    var isComplete: Bool { ended || !started }
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
