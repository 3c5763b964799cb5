import Crypto
import Foundation

/// The hash chain of the audit log (README, "Evidence").
///
/// Every line ends in `,"seq":N,"chain":"<64 hex>"}`. Its canonical bytes are the line without the
/// `,"chain":"…"` member, that is the line's bytes up to that member followed by `}`: a JSON object
/// of its own, with `seq` in it. `chain` is SHA-256 over the previous line's chain value (32 raw
/// bytes; 32 zero bytes before the first line) followed by the canonical bytes. The chain is
/// computed on the bytes as written, never on a re-encoding, so readers and verifiers need no
/// canonical JSON encoder and fields added later are covered as they are.
public enum Chain {
    /// `,"chain":"` + 64 hex + `"}`: the fixed-size end of every chained line.
    static let suffixLength = 10 + 64 + 2
    static let chainKey = Array(#","chain":""#.utf8)
    static let seqKey = Array(#","seq":"#.utf8)

    /// The chain value of one line.
    public struct Value: Equatable, Sendable, CustomStringConvertible {
        // four words rather than an array: one is made per event on the writer's path
        var w: (UInt64, UInt64, UInt64, UInt64)
        public static let genesis = Value(w: (0, 0, 0, 0))

        public static func == (a: Value, b: Value) -> Bool { a.w == b.w }

        init(w: (UInt64, UInt64, UInt64, UInt64)) { self.w = w }

        init(_ digest: SHA256.Digest) {
            var v = Value.genesis
            withUnsafeMutableBytes(of: &v.w) { dst in digest.withUnsafeBytes { dst.copyMemory(from: $0) } }
            self = v
        }

        /// Parses 64 lower-case hex digits.
        public init?(hex: some Collection<UInt8>) {
            guard hex.count == 64 else { return nil }
            var v = Value.genesis
            let ok = withUnsafeMutableBytes(of: &v.w) { dst -> Bool in
                var i = 0
                var hi: UInt8 = 0
                for (n, c) in hex.enumerated() {
                    let d: UInt8
                    switch c {
                    case 48...57: d = c - 48
                    case 97...102: d = c - 87
                    default: return false
                    }
                    if n & 1 == 0 { hi = d } else { dst[i] = hi << 4 | d; i += 1 }
                }
                return true
            }
            guard ok else { return nil }
            self = v
        }

        public init?(hex: String) { self.init(hex: Array(hex.utf8)) }

        func appendHex(to out: inout [UInt8]) {
            // 64 digits made in a stack buffer and appended at once: one append per event, not 64
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { digits in
                withUnsafeBytes(of: w) { raw in
                    for (i, b) in raw.enumerated() {
                        let hi = b >> 4, lo = b & 0xf
                        digits[2 * i] = hi < 10 ? 48 + hi : 87 + hi
                        digits[2 * i + 1] = lo < 10 ? 48 + lo : 87 + lo
                    }
                }
                out.append(contentsOf: digits)
            }
        }

        public var hex: String {
            var out: [UInt8] = []
            out.reserveCapacity(64)
            appendHex(to: &out)
            return String(decoding: out, as: UTF8.self)
        }

        public var description: String { hex }

        func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try withUnsafeBytes(of: w, body)
        }
    }

    /// The chain value of a line whose canonical bytes are `body` + `}` (body: the line up to its
    /// chain member), after a line whose chain value is `previous`.
    static func link(previous: Value, body: UnsafeRawBufferPointer) -> Value {
        var h = SHA256()
        previous.withBytes { h.update(bufferPointer: $0) }
        h.update(bufferPointer: body)
        withUnsafeBytes(of: UInt8(ascii: "}")) { h.update(bufferPointer: $0) }
        return Value(h.finalize())
    }

    /// Seals the event whose JSON is `block[start...]` (ending in `}`): adds `seq`, computes the
    /// chain after `previous` and adds it. Returns the new line's chain value.
    static func seal(_ block: inout [UInt8], from start: Int, seq: UInt64, previous: Value) -> Value {
        precondition(block.last == UInt8(ascii: "}"))
        block.removeLast()
        block.append(contentsOf: seqKey)
        JSONWriter.appendUnsigned(seq, to: &block)
        let value = block.withUnsafeBytes { link(previous: previous, body: UnsafeRawBufferPointer(rebasing: $0[start...])) }
        block.append(contentsOf: chainKey)
        value.appendHex(to: &block)
        block.append(UInt8(ascii: "\""))
        block.append(UInt8(ascii: "}"))
        return value
    }

    /// What the end of a chained line says.
    public struct Seal: Equatable, Sendable {
        public var seq: UInt64
        public var chain: Value
        /// Where the `,"chain":` member starts: the canonical bytes are the line up to here and `}`.
        public var bodyEnd: Int
    }

    /// Reads `seq` and `chain` off the end of a line (no newline); nil when the line is not chained.
    public static func seal(of line: UnsafeRawBufferPointer) -> Seal? {
        let n = line.count
        guard n > suffixLength + seqKey.count + 2, line[n - 1] == UInt8(ascii: "}"), line[n - 2] == UInt8(ascii: "\"") else { return nil }
        let bodyEnd = n - suffixLength
        guard chainKey.indices.allSatisfy({ line[bodyEnd + $0] == chainKey[$0] }),
              let chain = Value(hex: UnsafeRawBufferPointer(rebasing: line[(bodyEnd + 10)..<(n - 2)])) else { return nil }
        // digits of seq, backwards from the chain member
        var i = bodyEnd
        var seq: UInt64 = 0
        var scale: UInt64 = 1
        while i > 0, line[i - 1] >= 48, line[i - 1] <= 57, bodyEnd - i < 19 {
            seq += UInt64(line[i - 1] - 48) * scale
            scale *= 10
            i -= 1
        }
        guard i < bodyEnd, i >= seqKey.count,
              seqKey.indices.allSatisfy({ line[i - seqKey.count + $0] == seqKey[$0] }) else { return nil }
        return Seal(seq: seq, chain: chain, bodyEnd: bodyEnd)
    }

    public static func seal(of line: some DataProtocol) -> Seal? {
        let bytes = Array(line)
        return bytes.withUnsafeBytes { seal(of: $0) }
    }

    /// The chain value `line` should carry after `previous` (nil when the line is not chained).
    public static func expected(for line: UnsafeRawBufferPointer, after previous: Value) -> Value? {
        guard let s = seal(of: line) else { return nil }
        return link(previous: previous, body: UnsafeRawBufferPointer(rebasing: line[0..<s.bodyEnd]))
    }
}
