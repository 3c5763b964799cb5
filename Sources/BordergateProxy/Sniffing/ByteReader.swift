/// A bounds-checked cursor over part of a byte array: every read answers nil rather than trapping
/// when the bytes run out before the end it was given.
struct SniffByteReader {
    private let bytes: [UInt8]
    private(set) var index: Int
    let end: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.index = start
        self.end = min(end ?? bytes.count, bytes.count)
    }

    var remaining: Int { end - index }
    var isAtEnd: Bool { index >= end }

    mutating func readUInt8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func readUInt16() -> Int? {
        guard remaining >= 2 else { return nil }
        defer { index += 2 }
        return Int(bytes[index]) << 8 | Int(bytes[index + 1])
    }

    mutating func readUInt24() -> Int? {
        guard remaining >= 3 else { return nil }
        defer { index += 3 }
        return Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
    }

    /// Skips `count` bytes; false (and nothing skipped) when fewer remain.
    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, remaining >= count else { return false }
        index += count
        return true
    }

    /// The next `count` bytes as a reader of their own, which cannot read past them.
    mutating func readChild(_ count: Int) -> SniffByteReader? {
        guard count >= 0, remaining >= count else { return nil }
        defer { index += count }
        return SniffByteReader(bytes, from: index, to: index + count)
    }

    /// The next `count` bytes, copied.
    mutating func readBytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, remaining >= count else { return nil }
        defer { index += count }
        return bytes[index..<index + count]
    }
}

/// Hostnames as the sniffer reports them.
enum SniffedHostname {
    /// The longest name DNS can carry, with room for a trailing dot.
    static let maximumLength = 254

    /// The longest label DNS can carry.
    static let maximumLabelLength = 63

    /// `bytes` lower-cased if it is a plausible DNS name or IPv4 literal, else nil: letters,
    /// digits, `-` and `_` in labels of 1 to 63 bytes separated by single dots, at most one
    /// trailing dot, 254 bytes in all.
    static func normalize<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return nil }
        var lowered: [UInt8] = []
        lowered.reserveCapacity(bytes.count)
        var labelLength = 0
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"):
                lowered.append(byte)
                labelLength += 1
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                lowered.append(byte + 32)
                labelLength += 1
            case UInt8(ascii: "."):
                guard labelLength > 0 else { return nil }
                lowered.append(byte)
                labelLength = 0
            default:
                return nil
            }
            guard labelLength <= maximumLabelLength else { return nil }
        }
        return String(decoding: lowered, as: UTF8.self)
    }

    /// The inside of an IPv6 literal (`2001:DB8::1`), lower-cased, if it has only hex digits,
    /// colons and dots (for an embedded IPv4 tail) and at least one colon; else nil.
    static func normalizeIPv6<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
        guard bytes.count >= 2, bytes.count <= 45, bytes.contains(UInt8(ascii: ":")) else { return nil }
        var lowered: [UInt8] = []
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: ":"), UInt8(ascii: "."):
                lowered.append(byte)
            case UInt8(ascii: "A")...UInt8(ascii: "F"):
                lowered.append(byte + 32)
            default:
                return nil
            }
        }
        return String(decoding: lowered, as: UTF8.self)
    }
}
