/// Bordergate's own binary form of one or more region tables: quick to load, checked on load.
///
/// All integers little-endian. Header (32 bytes):
///
///     0  magic   "BGRT\r\n\u{1A}\n" (catches text-mode mangling, like PNG's)
///     8  u32     version (1)
///     12 u32     number of tables
///     16 u64     payload length in bytes
///     24 u64     FNV-1a 64 of the payload
///
/// Payload, every section padded to 4 bytes:
///
///     u32 string count S; u32 byte length of each string [S]; UTF-8 bytes of all strings
///     per table: u32 name, u32 source (string indexes), u32 IPv4 count N4, u32 IPv6 count N6
///     per table: u32 IPv4 address [N4] (host order value), u32 region [N4], u8 length [N4],
///                16-byte IPv6 address [N6] (network order), u32 region [N6], u8 length [N6]
public enum CompiledRegionTables {
    public static let magic: [UInt8] = [0x42, 0x47, 0x52, 0x54, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let version: UInt32 = 1
    static let headerSize = 32

    public static func encode(_ tables: [RegionTable]) -> [UInt8] {
        var strings: [String] = []
        var index: [String: UInt32] = [:]
        func intern(_ s: String) -> UInt32 {
            if let i = index[s] { return i }
            let i = UInt32(strings.count)
            strings.append(s)
            index[s] = i
            return i
        }
        struct Split { var v4: [RegionTable.Entry] = []; var v6: [RegionTable.Entry] = [] }
        var splits: [Split] = []
        var heads: [(UInt32, UInt32)] = []
        for t in tables {
            heads.append((intern(t.name), intern(t.source)))
            var s = Split()
            for e in t.entries {
                if e.prefix.address.isIPv4 { s.v4.append(e) } else { s.v6.append(e) }
            }
            splits.append(s)
        }
        // Regions interned in file order, so decoding and encoding again gives the same bytes.
        for s in splits { for e in s.v4 { _ = intern(e.region) }; for e in s.v6 { _ = intern(e.region) } }

        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func pad() { while out.count % 4 != 0 { out.append(0) } }
        u32(UInt32(strings.count))
        for s in strings { u32(UInt32(s.utf8.count)) }
        for s in strings { out.append(contentsOf: s.utf8) }
        pad()
        for (i, s) in splits.enumerated() {
            u32(heads[i].0); u32(heads[i].1); u32(UInt32(s.v4.count)); u32(UInt32(s.v6.count))
        }
        for s in splits {
            for e in s.v4 { u32(e.prefix.address.ipv4!) }
            for e in s.v4 { u32(index[e.region]!) }
            for e in s.v4 { out.append(UInt8(e.prefix.length)) }
            pad()
            for e in s.v6 { out.append(contentsOf: e.prefix.address.bytes16) }
            for e in s.v6 { u32(index[e.region]!) }
            for e in s.v6 { out.append(UInt8(e.prefix.length)) }
            pad()
        }

        var file = magic
        func put32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { file.append(contentsOf: $0) } }
        func put64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { file.append(contentsOf: $0) } }
        put32(version)
        put32(UInt32(tables.count))
        put64(UInt64(out.count))
        put64(fnv1a64(out[...]))
        file.append(contentsOf: out)
        return file
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> [RegionTable] {
        func fail(_ at: Int, _ problem: String, _ expected: String) -> RegionTableError {
            RegionTableError(path: path, location: .byteOffset(at), problem: problem, expected: expected)
        }
        guard bytes.count >= headerSize else {
            throw fail(bytes.count, "the file ends inside the \(headerSize)-byte header", "a Bordergate compiled region table file")
        }
        guard bytes.starts(with: magic) else {
            throw fail(0, "the file does not start with the compiled-table magic", "\"BGRT\\r\\n\\x1a\\n\"")
        }
        return try bytes.withUnsafeBytes { raw -> [RegionTable] in
            func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            let v = u32(8)
            guard v == version else { throw fail(8, "format version \(v)", "version \(version) (recompile the tables with this Bordergate)") }
            let tableCount = Int(u32(12))
            let payloadLength = u64(16)
            guard payloadLength == UInt64(bytes.count - headerSize) else {
                throw fail(16, "the header announces \(payloadLength) payload bytes but \(bytes.count - headerSize) follow (truncated?)",
                           "the whole file as written")
            }
            let sum = fnv1a64(bytes[headerSize...])
            guard sum == u64(24) else { throw fail(24, "the checksum does not match the contents (corrupt file)", "an intact file") }

            let end = bytes.count
            var at = headerSize
            func need(_ n: Int, _ what: String) throws {
                guard n >= 0, n <= end - at else { throw fail(at, "\(what) runs past the end of the file", "a complete file") }
            }
            func align() { at = (at + 3) & ~3 }

            try need(4, "the string count")
            let stringCount = Int(u32(at)); at += 4
            try need(stringCount * 4, "the string lengths")
            var lengths: [Int] = []
            lengths.reserveCapacity(stringCount)
            var total = 0
            for i in 0..<stringCount { let n = Int(u32(at + 4 * i)); lengths.append(n); total += n }
            at += stringCount * 4
            try need(total, "the string bytes")
            var strings: [String] = []
            strings.reserveCapacity(stringCount)
            for n in lengths {
                strings.append(String(decoding: UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]), as: UTF8.self))
                at += n
            }
            align()
            func string(_ i: UInt32, _ where_: Int) throws -> String {
                guard Int(i) < strings.count else { throw fail(where_, "string index \(i) beyond the \(strings.count) strings", "an index into the string table") }
                return strings[Int(i)]
            }

            try need(tableCount * 16, "the table headers")
            var heads: [(String, String, Int, Int)] = []
            heads.reserveCapacity(tableCount)
            // Every count is checked against the bytes left before anything is sized by it: a
            // header's count times its record size must fit in the file.
            var announced = 0
            for _ in 0..<tableCount {
                let n4 = Int(u32(at + 8)), n6 = Int(u32(at + 12))
                announced += n4 * 9 + n6 * 21
                guard announced <= end - at - 16 * (tableCount - heads.count) else {
                    throw fail(at + 8, "table \(heads.count + 1) announces \(n4) IPv4 and \(n6) IPv6 entries, \(announced) bytes of entries with the tables before it, more than the \(end - at - 16 * (tableCount - heads.count)) bytes after the table headers",
                               "entry counts that fit in the file (9 bytes per IPv4, 21 per IPv6 entry)")
                }
                heads.append((try string(u32(at), at), try string(u32(at + 4), at + 4), n4, n6))
                at += 16
            }
            var tables: [RegionTable] = []
            tables.reserveCapacity(tableCount)
            for (name, source, n4, n6) in heads {
                try need(n4 * 9, "the IPv4 entries of table \(name.quotedForError)")
                var entries: [RegionTable.Entry] = []
                entries.reserveCapacity(n4 + n6)
                let a4 = at, r4 = at + 4 * n4, l4 = at + 8 * n4
                for i in 0..<n4 {
                    let length = Int(raw[l4 + i])
                    guard length <= 32 else { throw fail(l4 + i, "an IPv4 prefix length of \(length)", "0...32") }
                    let region = try string(u32(r4 + 4 * i), r4 + 4 * i)
                    let value = IPAddress.v4MappedBase | UInt128(u32(a4 + 4 * i))
                    entries.append(.init(prefix: IPPrefix(unchecked: value, bits128: 96 + length), region: region))
                }
                at += n4 * 9
                align()
                try need(n6 * 21, "the IPv6 entries of table \(name.quotedForError)")
                let a6 = at, r6 = at + 16 * n6, l6 = at + 20 * n6
                for i in 0..<n6 {
                    let length = Int(raw[l6 + i])
                    guard length <= 128 else { throw fail(l6 + i, "an IPv6 prefix length of \(length)", "0...128") }
                    let region = try string(u32(r6 + 4 * i), r6 + 4 * i)
                    let hi = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: a6 + 16 * i, as: UInt64.self))
                    let lo = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: a6 + 16 * i + 8, as: UInt64.self))
                    let value = UInt128(hi) << 64 | UInt128(lo)
                    let prefix = IPPrefix(unchecked: value, bits128: length)
                    guard !prefix.address.isIPv4 else { throw fail(a6 + 16 * i, "an IPv4-mapped prefix among the IPv6 entries", "IPv4 prefixes in the IPv4 section") }
                    entries.append(.init(prefix: prefix, region: region))
                }
                at += n6 * 21
                align()
                tables.append(RegionTable(name: name, source: source, entries: entries))
            }
            guard at == end else { throw fail(at, "\(end - at) bytes after the last table", "the file to end after the last table") }
            return tables
        }
    }

    /// FNV-1a 64 over the payload.
    static func fnv1a64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h = FNV1a()
        bytes.withUnsafeBufferPointer { p in
            for b in p { h.mix(b) }
        }
        return h.value
    }
}

/// FNV-1a, 64 bits: the compiled file's checksum and the kernel image's fingerprint.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func mix(_ b: UInt8) { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
}
