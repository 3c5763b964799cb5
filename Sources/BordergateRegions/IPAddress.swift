/// An IPv4 or IPv6 address. IPv4 is kept IPv4-mapped (`::ffff:a.b.c.d`), so one 128-bit value
/// orders and hashes both families.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address as a big-endian 128-bit number (bit 127 is the first bit on the wire).
    public let value: UInt128

    static let v4MappedBase: UInt128 = 0xffff << 32
    static let v4MappedMask: UInt128 = ~UInt128(0xffff_ffff)

    public init(value: UInt128) { self.value = value }

    /// `ipv4` in host byte order.
    public init(ipv4: UInt32) { value = IPAddress.v4MappedBase | UInt128(ipv4) }

    /// 4 bytes (IPv4) or 16 bytes (IPv6; v4-mapped becomes IPv4). Other lengths are a programming error.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 4 || bytes.count == 16, "an IP address has 4 or 16 bytes, not \(bytes.count)")
        if bytes.count == 4 {
            self.init(ipv4: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
        } else {
            var v: UInt128 = 0
            for b in bytes { v = v << 8 | UInt128(b) }
            self.init(value: v)
        }
    }

    /// "198.51.100.7", "2001:db8::1", "::ffff:198.51.100.7" (which is IPv4).
    public init?(_ text: String) {
        var text = text
        guard let parsed = text.withUTF8({ IPAddress.parse($0, 0, $0.count) }) else { return nil }
        self = parsed
    }

    public var isIPv4: Bool { value & IPAddress.v4MappedMask == IPAddress.v4MappedBase }

    public var ipv4: UInt32? { isIPv4 ? UInt32(truncatingIfNeeded: value) : nil }

    public var bytes16: [UInt8] {
        (0..<16).map { UInt8(truncatingIfNeeded: value >> (120 - 8 * $0)) }
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool { lhs.value < rhs.value }

    public var description: String {
        if let v4 = ipv4 { return IPAddress.formatIPv4(v4) }
        var groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> (112 - 16 * $0)) }
        // RFC 5952: compress the longest run (first on a tie) of two or more zero groups.
        var bestStart = -1, bestLength = 1, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength { bestStart = i; bestLength = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ g: UInt16) -> String { String(g, radix: 16) }
        if bestStart < 0 { return groups.map(hex).joined(separator: ":") }
        let head = groups[0..<bestStart].map(hex).joined(separator: ":")
        groups = Array(groups[(bestStart + bestLength)...])
        return head + "::" + groups.map(hex).joined(separator: ":")
    }

    static func formatIPv4(_ v: UInt32) -> String {
        "\(v >> 24).\(v >> 16 & 0xff).\(v >> 8 & 0xff).\(v & 0xff)"
    }

    // MARK: parsing straight from bytes, so readers need not build a String per field

    static func parse(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> IPAddress? {
        var hasColon = false
        for i in start..<end where p[i] == UInt8(ascii: ":") { hasColon = true; break }
        if hasColon { return parseIPv6(p, start, end).map { IPAddress(value: $0) } }
        return parseIPv4(p, start, end).map { IPAddress(ipv4: $0) }
    }

    static func parseIPv4(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> UInt32? {
        var result: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0
        var i = start
        while i < end {
            let c = p[i]
            if c >= 48 && c <= 57 {
                part = part * 10 + UInt32(c - 48)
                digits += 1
                if digits > 3 || part > 255 { return nil }
            } else if c == UInt8(ascii: ".") {
                if digits == 0 || dots == 3 { return nil }
                result = result << 8 | part
                part = 0; digits = 0; dots += 1
            } else {
                return nil
            }
            i += 1
        }
        if digits == 0 || dots != 3 { return nil }
        return result << 8 | part
    }

    static func parseIPv6(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> UInt128? {
        var groups = [UInt16](repeating: 0, count: 8)
        var count = 0
        var gap = -1 // index in groups where "::" stands
        var i = start
        if end - start >= 2 && p[start] == UInt8(ascii: ":") {
            guard p[start + 1] == UInt8(ascii: ":") else { return nil }
            gap = 0
            i += 2
            if i == end { return 0 }
        }
        while i < end {
            // One group: hex digits, or a trailing dotted quad.
            var j = i, v: UInt32 = 0
            while j < end, let d = hexValue(p[j]) {
                v = v << 4 | UInt32(d)
                j += 1
                if j - i > 4 { break }
            }
            if j < end && p[j] == UInt8(ascii: ".") {
                guard count <= 6, let v4 = parseIPv4(p, i, end) else { return nil }
                groups[count] = UInt16(v4 >> 16); groups[count + 1] = UInt16(v4 & 0xffff)
                count += 2
                i = end
                break
            }
            let n = j - i
            guard n >= 1 && n <= 4 && count < 8 else { return nil }
            groups[count] = UInt16(v)
            count += 1
            if j == end { i = end; break }
            guard p[j] == UInt8(ascii: ":") else { return nil }
            if j + 1 < end && p[j + 1] == UInt8(ascii: ":") {
                guard gap < 0 else { return nil }
                gap = count
                i = j + 2
                if i == end { break }
            } else {
                i = j + 1
                guard i < end else { return nil } // trailing single colon
            }
        }
        if gap >= 0 {
            guard count < 8 else { return nil }
            let tail = Array(groups[gap..<count])
            for k in gap..<8 { groups[k] = 0 }
            for (k, g) in tail.enumerated() { groups[8 - tail.count + k] = g }
        } else if count != 8 {
            return nil
        }
        var value: UInt128 = 0
        for g in groups { value = value << 16 | UInt128(g) }
        return value
    }

    @inline(__always) static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
}

/// A network: an address with its host bits cleared, and a length in the address's own family
/// (0...32 for IPv4, 0...128 for IPv6).
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    /// "198.51.100.0/25", "2001:db8::/33"; a bare address is a host prefix. Host bits are cleared.
    public init?(_ text: String) {
        var text = text
        guard let parsed = text.withUTF8({ IPPrefix.parse($0, 0, $0.count) }) else { return nil }
        self = parsed
    }

    /// Clears host bits. `::ffff:0:0/96` and longer become IPv4 prefixes.
    public init?(address: IPAddress, length: Int) {
        let isV4 = address.isIPv4
        guard length >= 0 && length <= (isV4 ? 32 : 128) else { return nil }
        self.init(unchecked: address.value, bits128: isV4 ? length + 96 : length)
    }

    /// `value` and `bits128` in the 128-bit space; `bits128` in 0...128.
    init(unchecked value: UInt128, bits128: Int) {
        let masked = value & IPPrefix.mask(bits128)
        let address = IPAddress(value: masked)
        self.address = address
        length = address.isIPv4 && bits128 >= 96 ? bits128 - 96 : bits128
    }

    /// The length in the 128-bit space (IPv4 lengths + 96).
    var bits128: Int { address.isIPv4 ? length + 96 : length }

    /// The last address of the prefix, as a 128-bit value.
    var lastValue: UInt128 { address.value | ~IPPrefix.mask(bits128) }

    @inline(__always) static func mask(_ bits: Int) -> UInt128 {
        bits == 0 ? 0 : ~UInt128(0) << (128 - bits)
    }

    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.isIPv4 == address.isIPv4 else { return false }
        return ip.value & IPPrefix.mask(bits128) == address.value
    }

    public var description: String { "\(address)/\(length)" }

    static func parse(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> IPPrefix? {
        var slash = -1
        for i in start..<end where p[i] == UInt8(ascii: "/") { slash = i; break }
        let addrEnd = slash < 0 ? end : slash
        guard let address = IPAddress.parse(p, start, addrEnd) else { return nil }
        if slash < 0 { return IPPrefix(address: address, length: address.isIPv4 ? 32 : 128) }
        var n = 0, i = slash + 1
        guard i < end, end - i <= 3 else { return nil }
        while i < end {
            guard p[i] >= 48 && p[i] <= 57 else { return nil }
            n = n * 10 + Int(p[i] - 48)
            i += 1
        }
        // "::ffff:10.0.0.0/104" is written in IPv6 terms even though the address reads as IPv4.
        var written6 = false
        for k in start..<addrEnd where p[k] == UInt8(ascii: ":") { written6 = true; break }
        if written6 {
            guard n <= 128 else { return nil }
            return IPPrefix(unchecked: address.value, bits128: n)
        }
        return IPPrefix(address: address, length: n)
    }
}
