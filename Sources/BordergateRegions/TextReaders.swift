/// cidr-csv (`prefix,region`) and range-csv (`start,end,country`, Tor's geoip and geoip6).
enum TextTableReader {
    static func readCIDR(_ bytes: [UInt8], path: String, name: String) throws -> RegionTable {
        var builder = TableBuilder()
        builder.reserve(bytes.count / 24)
        var sawData = false
        try forEachLine(bytes) { p, lineNo, start, end in
            var fields = (0, 0, 0, 0)
            let n = split2(p, start, end, &fields)
            if !sawData && n == 2 && isHeader(p, fields.0, fields.1, "prefix") && isHeader(p, fields.2, fields.3, "region") {
                sawData = true
                return
            }
            sawData = true
            guard n == 2 else {
                throw RegionTableError(path: path, location: .line(lineNo),
                                       problem: "\(n) comma-separated fields",
                                       expected: "prefix,region (e.g. 198.51.100.0/24,DE)")
            }
            guard let prefix = IPPrefix.parse(p, fields.0, fields.1) else {
                throw RegionTableError(path: path, location: .line(lineNo),
                                       problem: "\(text(p, fields.0, fields.1).quotedForError) is not an IP prefix",
                                       expected: "an IPv4 or IPv6 prefix such as 198.51.100.0/24 or 2001:db8::/32")
            }
            guard fields.3 > fields.2 else {
                throw RegionTableError(path: path, location: .line(lineNo), problem: "the region is empty",
                                       expected: "a region such as DE or aws:eu-central-1")
            }
            builder.add(prefix, region: builder.region(p, fields.2, fields.3))
        }
        return RegionTable(name: name, source: path, entries: builder.entries)
    }

    static func readRanges(_ bytes: [UInt8], path: String, name: String) throws -> RegionTable {
        let maxEntries = bytes.count / 2 + 1024
        var builder = TableBuilder()
        builder.reserve(bytes.count / 24)
        try forEachLine(bytes) { p, lineNo, start, end in
            var f = (0, 0, 0, 0, 0, 0)
            let n = split3(p, start, end, &f)
            guard n == 3 else {
                throw RegionTableError(path: path, location: .line(lineNo), problem: "\(n) comma-separated fields",
                                       expected: "start,end,country (e.g. 16777216,16777471,AU or 2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP)")
            }
            func address(_ s: Int, _ e: Int, _ what: String) throws -> IPAddress {
                if let a = IPAddress.parse(p, s, e) { return a }
                if let v = decimal(p, s, e) { return IPAddress(ipv4: v) }
                throw RegionTableError(path: path, location: .line(lineNo),
                                       problem: "the \(what) \(text(p, s, e).quotedForError) is not an address",
                                       expected: "a decimal IPv4 number, a dotted IPv4 address or an IPv6 address")
            }
            let first = try address(f.0, f.1, "start")
            let last = try address(f.2, f.3, "end")
            guard first.isIPv4 == last.isIPv4 else {
                throw RegionTableError(path: path, location: .line(lineNo), problem: "the range mixes IPv4 and IPv6",
                                       expected: "start and end of the same family")
            }
            guard first <= last else {
                throw RegionTableError(path: path, location: .line(lineNo), problem: "the range ends (\(last)) before it starts (\(first))",
                                       expected: "start <= end")
            }
            let ccLength = f.5 - f.4
            // Tor marks unknown ranges "??"; they belong to no region.
            if ccLength == 2 && p[f.4] == UInt8(ascii: "?") { return }
            guard ccLength > 0 else {
                throw RegionTableError(path: path, location: .line(lineNo), problem: "the country is empty",
                                       expected: "an ISO 3166 alpha-2 country code")
            }
            let region = builder.region(p, f.4, f.5)
            RangeSplitter.forEachPrefix(from: first, to: last) { builder.add($0, region: region) }
            // A range of 13 bytes can split into 254 prefixes: the table may not outgrow its file
            // by more than that ratio allows for real lists (a prefix per two bytes).
            guard builder.entries.count <= maxEntries else {
                throw RegionTableError(path: path, location: .line(lineNo),
                                       problem: "the ranges so far split into \(builder.entries.count) prefixes, more than a \(bytes.count)-byte file is allowed (\(maxEntries))",
                                       expected: "ranges that are mostly aligned blocks, as in Tor's geoip files")
            }
        }
        return RegionTable(name: name, source: path, entries: builder.entries)
    }

    // MARK: helpers

    /// Calls `body` with each line that is neither blank nor a `#` comment, trimmed of spaces.
    static func forEachLine(_ bytes: [UInt8],
                            _ body: (UnsafeBufferPointer<UInt8>, Int, Int, Int) throws -> Void) throws {
        try bytes.withUnsafeBufferPointer { p in
            var lineNo = 0, i = 0
            // A UTF-8 byte order mark is not part of the first field.
            if p.count >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF { i = 3 }
            while i < p.count {
                lineNo += 1
                var end = i
                while end < p.count && p[end] != 10 { end += 1 }
                let next = end + 1
                var s = i, e = end
                while s < e && (p[s] == 32 || p[s] == 9) { s += 1 }
                while e > s && (p[e - 1] == 32 || p[e - 1] == 9 || p[e - 1] == 13) { e -= 1 }
                if s < e && p[s] != UInt8(ascii: "#") { try body(p, lineNo, s, e) }
                i = next
            }
        }
    }

    /// Splits into at most two fields (trimmed); returns the number of fields found.
    static func split2(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ f: inout (Int, Int, Int, Int)) -> Int {
        var commas = 0, comma = -1
        for i in start..<end where p[i] == UInt8(ascii: ",") {
            commas += 1
            if comma < 0 { comma = i }
        }
        if commas != 1 { return commas + 1 }
        (f.0, f.1) = trim(p, start, comma)
        (f.2, f.3) = trim(p, comma + 1, end)
        return 2
    }

    static func split3(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ f: inout (Int, Int, Int, Int, Int, Int)) -> Int {
        var c1 = -1, c2 = -1, commas = 0
        for i in start..<end where p[i] == UInt8(ascii: ",") {
            commas += 1
            if c1 < 0 { c1 = i } else if c2 < 0 { c2 = i }
        }
        if commas != 2 { return commas + 1 }
        (f.0, f.1) = trim(p, start, c1)
        (f.2, f.3) = trim(p, c1 + 1, c2)
        (f.4, f.5) = trim(p, c2 + 1, end)
        return 3
    }

    static func trim(_ p: UnsafeBufferPointer<UInt8>, _ s0: Int, _ e0: Int) -> (Int, Int) {
        var s = s0, e = e0
        while s < e && (p[s] == 32 || p[s] == 9 || p[s] == UInt8(ascii: "\"")) { s += 1 }
        while e > s && (p[e - 1] == 32 || p[e - 1] == 9 || p[e - 1] == UInt8(ascii: "\"")) { e -= 1 }
        return (s, e)
    }

    static func decimal(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> UInt32? {
        guard e > s, e - s <= 10 else { return nil }
        var v: UInt64 = 0
        for i in s..<e {
            guard p[i] >= 48 && p[i] <= 57 else { return nil }
            v = v * 10 + UInt64(p[i] - 48)
        }
        return v <= UInt64(UInt32.max) ? UInt32(v) : nil
    }

    static func text(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: p[s..<e]), as: UTF8.self)
    }

    static func isHeader(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, _ word: String) -> Bool {
        text(p, s, e).lowercased() == word
    }
}

/// Interns region names (normalising their case: country codes upper, "provider:region" lower)
/// and collects entries without repeating a (prefix, region) pair.
struct TableBuilder {
    private var cache: [[UInt8]: UInt32] = [:]
    private var names: [String] = []
    private var nameIDs: [String: UInt32] = [:]
    private var seen: Set<Key> = []
    private(set) var entries: [RegionTable.Entry] = []

    private struct Key: Hashable {
        var value: UInt128
        var bits: UInt8
        var region: UInt32
    }

    mutating func region(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> UInt32 {
        // Tables use few names, and consecutive lines mostly repeat one: check the last first.
        if let last = lastKey, last.count == e - s, last.elementsEqual(UnsafeBufferPointer(rebasing: p[s..<e])) { return lastID }
        let key = Array(UnsafeBufferPointer(rebasing: p[s..<e]))
        lastKey = key
        if let known = cache[key] { lastID = known; return known }
        lastID = intern(TableBuilder.normalise(String(decoding: key, as: UTF8.self)), key: key)
        return lastID
    }
    private var lastKey: [UInt8]?
    private var lastID: UInt32 = 0

    mutating func region(_ raw: String) -> UInt32 {
        let key = Array(raw.utf8)
        if let known = cache[key] { return known }
        return intern(TableBuilder.normalise(raw), key: key)
    }

    private mutating func intern(_ name: String, key: [UInt8]) -> UInt32 {
        // Two spellings of one name ("de", "DE") share one string.
        // A dictionary, not a search of `names`: a table of many distinct names stays linear.
        let id: UInt32
        if let i = nameIDs[name] { id = i } else { id = UInt32(names.count); names.append(name); nameIDs[name] = id }
        cache[key] = id
        return id
    }

    /// While prefixes arrive in ascending, non-overlapping order (as Tor's files and most lists
    /// do) none can repeat, so the set is only built once that order breaks.
    private var ordered = true
    private var lastEnd: UInt128 = 0
    private var regionIDs: [UInt32] = []

    mutating func add(_ prefix: IPPrefix, region: UInt32) {
        if ordered {
            if entries.isEmpty || prefix.address.value > lastEnd {
                lastEnd = prefix.lastValue
                entries.append(RegionTable.Entry(prefix: prefix, region: names[Int(region)]))
                regionIDs.append(region)
                return
            }
            ordered = false
            seen.reserveCapacity(entries.count * 2)
            for (e, r) in zip(entries, regionIDs) {
                seen.insert(Key(value: e.prefix.address.value, bits: UInt8(e.prefix.length), region: r))
            }
            regionIDs = []
        }
        guard seen.insert(Key(value: prefix.address.value, bits: UInt8(prefix.length), region: region)).inserted else { return }
        entries.append(RegionTable.Entry(prefix: prefix, region: names[Int(region)]))
    }

    mutating func reserve(_ n: Int) {
        entries.reserveCapacity(n)
        regionIDs.reserveCapacity(n)
    }

    static func normalise(_ raw: String) -> String {
        let t = raw.trimmingSpaces
        if t.contains(":") { return t.lowercased() }
        if t.utf8.count == 2 && t.allSatisfy({ $0.isASCII && $0.isLetter }) { return t.uppercased() }
        return t
    }
}

/// Splits an address range into the fewest CIDR prefixes that cover exactly it.
public enum RangeSplitter {
    public static func prefixes(from first: IPAddress, to last: IPAddress) -> [IPPrefix] {
        var result: [IPPrefix] = []
        forEachPrefix(from: first, to: last) { result.append($0) }
        return result
    }

    static func forEachPrefix(from first: IPAddress, to last: IPAddress, _ body: (IPPrefix) -> Void) {
        precondition(first.isIPv4 == last.isIPv4 && first <= last)
        if first.isIPv4 {
            forEachAlignedBlock(from: UInt32(truncatingIfNeeded: first.value), through: UInt32(truncatingIfNeeded: last.value)) { start, size in
                body(IPPrefix(unchecked: IPAddress.v4MappedBase | UInt128(start), bits128: 96 + 32 - size))
            }
        } else {
            forEachAlignedBlock(from: first.value, through: last.value) { start, size in
                body(IPPrefix(unchecked: start, bits128: 128 - size))
            }
        }
    }
}

/// Calls `body(start, size)` for the fewest aligned blocks of 2^size addresses that cover
/// `first...last` exactly, in order.
func forEachAlignedBlock<K: FixedWidthInteger & UnsignedInteger>(from first: K, through last: K, _ body: (K, Int) -> Void) {
    let width = K.bitWidth
    func blockLast(_ start: K, _ size: Int) -> K { start | (size >= width ? ~K(0) : (K(1) << size) - 1) }
    var cur = first
    while true {
        // The largest aligned block starting at `cur` that does not pass `last`.
        var size = cur == 0 ? width : min(cur.trailingZeroBitCount, width)
        while size > 0 && blockLast(cur, size) > last { size -= 1 }
        body(cur, size)
        let end = blockLast(cur, size)
        if end >= last { break }
        cur = end + 1
    }
}
