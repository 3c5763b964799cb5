import Crypto

/// Finds sensitive values in text and replaces them.
///
/// The engine is immutable and `Sendable`: build one per policy and share it. For whole values
/// (a header value, a column value, a small body) call ``mask(_:field:)-(ArraySlice<UInt8>,_)``
/// or ``mask(_:field:)-(String,_)``; for a body that arrives in chunks, ``makeStream()`` or, for
/// JSON whose field rules apply, ``makeJSONStream()``.
///
/// What the engine guarantees: every byte outside a detected value is left as it was, and a masked
/// value keeps its line breaks (a multi-line PEM block stays as many lines), so line-oriented
/// framing downstream is unchanged.
public struct MaskingEngine: Sendable {
    /// A PEM block longer than this is not recognised (the stream would have to hold it all back).
    public static let pemLimit = 16 * 1024
    /// The longest JWT part the scanner follows.
    public static let jwtLimit = 8 * 1024
    /// The longest custom-detector match, and the longest line a stream holds back for one.
    public static let customMatchLimit = 256

    public let configuration: MaskingConfiguration
    let scanner: BuiltinScanner
    let globs: [FieldGlob]
    let keyBytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(_ configuration: MaskingConfiguration) {
        self.configuration = configuration
        scanner = BuiltinScanner(configuration.detectors)
        globs = configuration.fields.map(FieldGlob.init)
        keyBytes = configuration.hashKey
    }

    /// Does a field rule cover this JSON key or column name?
    public func isMaskedField(_ name: some Collection<UInt8>) -> Bool {
        globs.contains { $0.matches(name) }
    }

    public func isMaskedField(_ name: String) -> Bool { isMaskedField(Array(name.utf8)) }

    /// The values in `bytes`, in order, not overlapping.
    public func detect(_ bytes: some Collection<UInt8>) -> [Detection] {
        let buffer = Array(bytes)
        return buffer.withUnsafeBufferPointer { p in
            findAll(p, from: 0, final: true).detections.map {
                Detection(range: $0.start..<$0.end, detector: $0.name)
            }
        }
    }

    /// Masks one whole value or text. When `field` is a name a field rule covers, the whole value is
    /// masked (counted under ``MaskCounts/fields``); otherwise the detectors run over it.
    public func mask(_ bytes: ArraySlice<UInt8>, field: String? = nil) -> (bytes: [UInt8], counts: MaskCounts) {
        var counts = MaskCounts()
        if let field, isMaskedField(field) {
            var out = [UInt8]()
            writeReplacement(label: "REDACTED", normalize: .raw, value: bytes, into: &out)
            counts.fields[field, default: 0] += 1
            return (out, counts)
        }
        let buffer = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity(buffer.count)
        buffer.withUnsafeBufferPointer { p in
            let found = findAll(p, from: 0, final: true)
            apply(found.detections, p, from: 0, upTo: p.count, into: &out, counts: &counts)
        }
        return (out, counts)
    }

    /// Masks a whole value whatever it holds (an HTTP header the policy names), counted under
    /// ``MaskCounts/fields`` as `name`.
    public func maskWhole(_ bytes: some Collection<UInt8>, countedAs name: String) -> (bytes: [UInt8], counts: MaskCounts) {
        var counts = MaskCounts()
        var out = [UInt8]()
        writeReplacement(label: "REDACTED", normalize: .raw, value: bytes, into: &out)
        counts.fields[name, default: 0] += 1
        return (out, counts)
    }

    public func mask(_ bytes: [UInt8], field: String? = nil) -> (bytes: [UInt8], counts: MaskCounts) {
        mask(bytes[...], field: field)
    }

    public func mask(_ text: String, field: String? = nil) -> (text: String, counts: MaskCounts) {
        let r = mask(Array(text.utf8)[...], field: field)
        return (String(decoding: r.bytes, as: UTF8.self), r.counts)
    }

    /// A masker for a body that arrives in chunks. See ``MaskingStream``.
    public func makeStream() -> MaskingStream { MaskingStream(engine: self) }

    /// A masker for a JSON body that arrives in chunks: field rules apply to values by key, the
    /// detectors to everything else. See ``JSONMaskingStream``.
    public func makeJSONStream() -> JSONMaskingStream { JSONMaskingStream(engine: self) }

    // MARK: internals

    struct Found {
        var detections: [(start: Int, end: Int, name: String, normalize: Normalization)]
        var decided: Int
    }

    enum Normalization { case raw, alnumUpper, lower }

    /// Finds the values in p[start...]; p[..<start] is context (bytes a stream already emitted).
    func findAll(_ p: UnsafeBufferPointer<UInt8>, from start: Int, final: Bool) -> Found {
        var raw = [RawDetection]()
        var decided = scanner.scan(p, from: start, final: final, into: &raw)
        var all = raw.map { d -> (start: Int, end: Int, name: String, normalize: Normalization) in
            let norm: Normalization
            switch d.kind {
            case .creditCard, .iban, .usSSN, .phone: norm = .alnumUpper
            case .email: norm = .lower
            default: norm = .raw
            }
            return (d.start, d.end, d.kind.rawValue, norm)
        }
        if !configuration.customDetectors.isEmpty {
            var limit = decided
            if !final {
                // a custom match lies within one line of at most customMatchLimit bytes
                var lineStart = decided
                while lineStart > start && p[lineStart - 1] != UInt8(ascii: "\n") && decided - lineStart < Self.customMatchLimit {
                    lineStart -= 1
                }
                limit = lineStart
            }
            let custom = customMatches(p, upTo: final ? p.count : decided)
            var merged = all
            for c in custom where c.start >= start && (final || c.end <= limit) {
                // a built-in detection that overlaps wins; so does an earlier custom one
                if merged.contains(where: { $0.start < c.end && c.start < $0.end }) { continue }
                merged.append((c.start, c.end, c.name, .raw))
            }
            all = merged.sorted { $0.start < $1.start }
            if !final {
                decided = limit
                for d in all where d.start < decided && d.end > decided { decided = d.start }
            }
        }
        return Found(detections: all, decided: decided)
    }

    private func customMatches(_ p: UnsafeBufferPointer<UInt8>, upTo end: Int) -> [(start: Int, end: Int, name: String)] {
        let bytes = UnsafeBufferPointer(rebasing: p[0..<end])
        // Offsets below are UTF-8 offsets: if the bytes are not valid UTF-8, non-ASCII bytes are
        // replaced one for one so that offsets still line up.
        let text = String(validating: bytes, as: UTF8.self)
            ?? String(decoding: bytes.map { $0 < 0x80 ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
        var out: [(start: Int, end: Int, name: String)] = []
        for detector in configuration.customDetectors {
            for m in text.matches(of: detector.regex) where !m.range.isEmpty {
                let s = text.utf8.distance(from: text.startIndex, to: m.range.lowerBound)
                let e = text.utf8.distance(from: text.startIndex, to: m.range.upperBound)
                if e - s <= Self.customMatchLimit { out.append((s, e, detector.name)) }
            }
        }
        return out.sorted { $0.start < $1.start }
    }

    /// Copies p[from..<upTo] to `out` with the detections replaced.
    func apply(_ detections: [(start: Int, end: Int, name: String, normalize: Normalization)], _ p: UnsafeBufferPointer<UInt8>,
               from: Int, upTo: Int, into out: inout [UInt8], counts: inout MaskCounts) {
        var at = from
        for d in detections where d.start >= at && d.end <= upTo {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: p[at..<d.start]))
            writeReplacement(label: d.name.uppercased(), normalize: d.normalize,
                             value: UnsafeBufferPointer(rebasing: p[d.start..<d.end]), into: &out)
            counts.detectors[d.name, default: 0] += 1
            at = d.end
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: p[at..<upTo]))
    }

    func writeReplacement(label: String, normalize: Normalization, value: some Collection<UInt8>, into out: inout [UInt8]) {
        switch configuration.strategy {
        case .redact:
            out.append(UInt8(ascii: "["))
            out.append(contentsOf: label.utf8)
            out.append(UInt8(ascii: "]"))
            out.append(contentsOf: value.lazy.filter { $0 == 10 || $0 == 13 })
        case .hash:
            var input = Array(label.utf8) + [UInt8(ascii: ":")]
            switch normalize {
            case .raw: input.append(contentsOf: value)
            case .lower: input.append(contentsOf: value.lazy.map(asciiLower))
            case .alnumUpper: input.append(contentsOf: value.lazy.filter(isAlnum).map { $0 &- 97 < 26 ? $0 - 32 : $0 })
            }
            out.append(UInt8(ascii: "["))
            out.append(contentsOf: label.utf8)
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: KeyedHash.token(key: key, value: input).utf8)
            out.append(UInt8(ascii: "]"))
            out.append(contentsOf: value.lazy.filter { $0 == 10 || $0 == 13 })
        case .partial:
            Partial.write(value, into: &out)
        }
    }
}

/// The `partial` strategy: the last 4 characters kept, every other one `*`, line breaks kept.
/// A value of 4 characters or fewer is all `*`.
enum Partial {
    static func write(_ value: some Collection<UInt8>, into out: inout [UInt8]) {
        // characters, not bytes: a UTF-8 continuation byte does not start one
        let chars = value.reduce(0) { $0 + (($1 & 0xC0) == 0x80 || $1 == 10 || $1 == 13 ? 0 : 1) }
        let keepFrom = chars <= 4 ? Int.max : chars - 4
        var index = 0
        for c in value {
            if c == 10 || c == 13 { out.append(c); continue }
            if (c & 0xC0) == 0x80 {
                if index > keepFrom { out.append(c) }
                continue
            }
            index += 1
            out.append(index > keepFrom ? c : UInt8(ascii: "*"))
        }
    }
}

/// Masks a body that arrives in chunks.
///
/// ```swift
/// var stream = engine.makeStream()
/// for chunk in body { send(stream.feed(chunk)) }
/// send(stream.finish())
/// report(stream.counts)
/// ```
///
/// A value split across chunks is found: the stream holds back the bytes it cannot decide yet,
/// at most about 1 KiB (a PEM block up to ``MaskingEngine/pemLimit``, a JWT up to three times
/// ``MaskingEngine/jwtLimit``), and returns everything before them. The concatenation of what
/// `feed` and `finish` return is exactly what ``MaskingEngine/mask(_:field:)-(ArraySlice<UInt8>,_)``
/// returns for the whole body.
public struct MaskingStream: Sendable {
    let engine: MaskingEngine
    // The last bytes emitted (left context for the matchers' look-back, at most 66 bytes), then
    // the bytes held back.
    var buffer: [UInt8] = []
    var start = 0
    static let contextSize = 80
    /// What was masked so far.
    public private(set) var counts = MaskCounts()

    init(engine: MaskingEngine) { self.engine = engine }

    /// Bytes held back, waiting for the next chunk.
    public var heldBytes: Int { buffer.count - start }

    /// Masks the next chunk; returns the bytes that are decided (possibly none).
    public mutating func feed(_ chunk: some Collection<UInt8>) -> [UInt8] {
        buffer.append(contentsOf: chunk)
        return run(final: false)
    }

    /// Ends the body: returns what was held back, masked.
    public mutating func finish() -> [UInt8] { run(final: true) }

    /// Decides everything held, as at the end of a body, and keeps the stream usable: for a caller
    /// that knows a value cannot continue here (the JSON masker at a string boundary).
    mutating func flush() -> [UInt8] { run(final: true) }

    private mutating func run(final: Bool) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(buffer.count - start)
        let engine = self.engine, start = self.start
        var counts = self.counts
        let decided = buffer.withUnsafeBufferPointer { p -> Int in
            let found = engine.findAll(p, from: start, final: final)
            engine.apply(found.detections, p, from: start, upTo: found.decided, into: &out, counts: &counts)
            return found.decided
        }
        self.counts = counts
        let keepFrom = max(0, decided - Self.contextSize)
        buffer.removeFirst(keepFrom)
        self.start = decided - keepFrom
        return out
    }
}
