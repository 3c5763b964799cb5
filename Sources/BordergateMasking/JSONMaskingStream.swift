import Crypto

/// Masks a JSON (or NDJSON) body that arrives in chunks.
///
/// It follows the JSON structure just enough to know the key of each value: the value of a key a
/// field rule covers (``MaskingConfiguration/fields``) is masked whole, whatever it holds — a string
/// keeps its quotes (`"password": "[REDACTED]"`), a number or boolean becomes a string
/// (`"ssn": "[REDACTED]"`) so the document stays valid JSON; `null`, objects and arrays are left to
/// the detectors. Everything else goes through the detectors as in ``MaskingStream``.
/// A masked field value is never buffered: `redact` and `hash` consume it as it comes, `partial`
/// holds back its last 4 characters.
///
/// The parser does not validate: on bytes that are not JSON it keeps going, and the detectors still
/// run over all of them.
public struct JSONMaskingStream: Sendable {
    let engine: MaskingEngine
    var inner: MaskingStream
    var fieldCounts = MaskCounts()

    private enum Mode { case normal, string, maskedString, maskedLiteral }
    private var mode = Mode.normal
    private var escaped = false
    private var stack: [UInt8] = []          // `{` or `[`, at most 512 deep (deeper is treated as flat)
    private var expectKey = false
    private var inKey = false
    private var key: [UInt8] = []
    private var keyDone: [UInt8]? = nil      // the key whose value comes next, once `:` is seen
    private var afterColon = false
    private var field = FieldValueMasker()

    init(engine: MaskingEngine) {
        self.engine = engine
        inner = engine.makeStream()
    }

    /// What was masked so far, by detectors and by field rules.
    public var counts: MaskCounts {
        var c = inner.counts
        c.add(fieldCounts)
        return c
    }

    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        let bytes = Array(chunk)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var segment = 0
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            switch mode {
            case .maskedString:
                if c == 10 || c == 13 {
                    // No JSON string holds a raw line break: the value ended with its line (NDJSON
                    // that is not valid JSON). The break itself is kept, as every break is.
                    out.append(contentsOf: field.finish(engine))
                    mode = .normal
                    escaped = false
                    segment = i
                    continue
                }
                if escaped {
                    escaped = false
                } else if c == UInt8(ascii: "\\") {
                    escaped = true
                } else if c == UInt8(ascii: "\"") {
                    out.append(contentsOf: field.finish(engine))
                    mode = .normal
                    segment = i
                    i += 1
                    continue
                }
                field.add(c, into: &out)
                i += 1
            case .maskedLiteral:
                if c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || isSpaceByte(c) {
                    out.append(contentsOf: field.finish(engine))
                    out.append(UInt8(ascii: "\""))
                    mode = .normal
                    segment = i
                    continue   // the delimiter is handled in normal mode
                }
                field.add(c, into: &out)
                i += 1
            case .string:
                if !escaped && !inKey {
                    // most of a body is inside strings: skip to the next quote or backslash
                    while i < bytes.count, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\") { i += 1 }
                    if i == bytes.count { continue }
                }
                let c = bytes[i]
                if escaped {
                    escaped = false
                } else if c == UInt8(ascii: "\\") {
                    escaped = true
                } else if c == UInt8(ascii: "\"") {
                    mode = .normal
                    if inKey { inKey = false; keyDone = engine.isMaskedField(key) ? key : nil } // a copy only for a masked key
                }
                if inKey && mode == .string && key.count < 256 { key.append(c) }
                i += 1
            case .normal:
                if afterColon && !isSpaceByte(c) {
                    afterColon = false
                    if let name = keyDone,
                       c == UInt8(ascii: "\"") || c == UInt8(ascii: "-") || isDigit(c) || c == UInt8(ascii: "t") || c == UInt8(ascii: "f") {
                        let quoted = c == UInt8(ascii: "\"")
                        let end = quoted ? i + 1 : i
                        out.append(contentsOf: inner.feed(bytes[segment..<end]))
                        out.append(contentsOf: inner.flush())
                        if !quoted { out.append(UInt8(ascii: "\"")) }
                        fieldCounts.fields[String(decoding: name, as: UTF8.self), default: 0] += 1
                        field = FieldValueMasker(engine)
                        mode = quoted ? .maskedString : .maskedLiteral
                        keyDone = nil
                        i = end
                        continue
                    }
                    keyDone = nil
                }
                switch c {
                case UInt8(ascii: "\""):
                    mode = .string
                    if expectKey && stack.last == UInt8(ascii: "{") { inKey = true; key.removeAll(keepingCapacity: true); expectKey = false }
                case UInt8(ascii: "{"):
                    if stack.count < 512 { stack.append(c) }
                    expectKey = true
                case UInt8(ascii: "["):
                    if stack.count < 512 { stack.append(c) }
                    expectKey = false
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    _ = stack.popLast()
                    expectKey = false
                case UInt8(ascii: ","):
                    expectKey = stack.last == UInt8(ascii: "{")
                case UInt8(ascii: ":"):
                    if keyDone != nil { afterColon = true }
                default:
                    break
                }
                i += 1
            }
        }
        if mode == .normal || mode == .string {
            out.append(contentsOf: inner.feed(bytes[segment..<bytes.count]))
        }
        return out
    }

    /// Ends the body.
    public mutating func finish() -> [UInt8] {
        var out = [UInt8]()
        switch mode {
        case .maskedString:
            out.append(contentsOf: field.finish(engine))
        case .maskedLiteral:
            out.append(contentsOf: field.finish(engine))
            out.append(UInt8(ascii: "\""))
        case .normal, .string:
            break
        }
        mode = .normal
        out.append(contentsOf: inner.finish())
        return out
    }
}

/// The replacement of one field value, written as the value streams by.
struct FieldValueMasker: Sendable {
    // HMAC is a value type without a Sendable conformance; this copy is only ever used by its owner
    nonisolated(unsafe) private var mac: HMAC<SHA256>? = nil
    private var tail: [UInt8] = []      // partial: the last 4 characters seen
    private var tailChars = 0
    private var chars = 0

    init() {}

    init(_ engine: MaskingEngine) {
        if engine.configuration.strategy == .hash {
            var mac = HMAC<SHA256>(key: engine.key)
            mac.update(data: Array("REDACTED:".utf8))
            self.mac = mac
        }
        self.strategy = engine.configuration.strategy
    }

    private var strategy = MaskStrategy.redact

    mutating func add(_ c: UInt8, into out: inout [UInt8]) {
        switch strategy {
        case .redact:
            break
        case .hash:
            mac?.update(data: [c])
        case .partial:
            let starts = (c & 0xC0) != 0x80
            if starts {
                chars += 1
                if tailChars == 4 {
                    // the oldest kept character becomes `*`
                    var k = 1
                    while k < tail.count && (tail[k] & 0xC0) == 0x80 { k += 1 }
                    tail.removeFirst(k)
                    out.append(UInt8(ascii: "*"))
                    tailChars -= 1
                }
                tailChars += 1
            }
            tail.append(c)
        }
    }

    mutating func finish(_ engine: MaskingEngine) -> [UInt8] {
        switch strategy {
        case .redact:
            return Array("[REDACTED]".utf8)
        case .hash:
            guard let mac else { return [] }
            let code = mac.finalize()
            var hex = ""
            for byte in code.prefix(4) {
                hex += String(byte >> 4, radix: 16) + String(byte & 0xf, radix: 16)
            }
            return Array("[REDACTED:\(hex)]".utf8)
        case .partial:
            // a kept backslash could start an escape the masking broke: it becomes `*` too
            if chars <= 4 { return [UInt8](repeating: UInt8(ascii: "*"), count: tailChars) }
            return tail.map { $0 == UInt8(ascii: "\\") ? UInt8(ascii: "*") : $0 }
        }
    }
}
