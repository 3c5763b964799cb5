/// A value of the MaxMind DB data section (https://maxmind.github.io/MaxMind-DB/).
/// Pointers are resolved while decoding, so they never appear here.
public enum MMDBValue: Sendable, Equatable {
    case string(String)
    case double(Double)
    case bytes([UInt8])
    case uint16(UInt16)
    case uint32(UInt32)
    case map([String: MMDBValue])
    case int32(Int32)
    case uint64(UInt64)
    case uint128(UInt128)
    case array([MMDBValue])
    case bool(Bool)
    case float(Float)

    public subscript(key: String) -> MMDBValue? {
        if case .map(let m) = self { return m[key] }
        return nil
    }

    var unsignedValue: UInt64? {
        switch self {
        case .uint16(let v): return UInt64(v)
        case .uint32(let v): return UInt64(v)
        case .uint64(let v): return v
        case .uint128(let v): return v <= UInt128(UInt64.max) ? UInt64(v) : nil
        case .int32(let v): return v >= 0 ? UInt64(v) : nil
        default: return nil
        }
    }
}

/// The work one read of a file may do, in field headers read: pointers and shared subtrees let a
/// small file describe unbounded work, so the limit is a multiple of the file's own size.
final class MMDBWork {
    let limit: Int
    private(set) var used = 0
    init(limit: Int) { self.limit = limit }
    /// For a file of `size` bytes: reading every field of it a few times over is allowed.
    convenience init(fileSize size: Int) { self.init(limit: 8 * size + 65_536) }
    /// False once the limit is passed.
    func charge(_ n: Int = 1) -> Bool {
        used += n
        return used <= limit
    }
}

/// Decodes one section (data or metadata) of a MaxMind DB file. Every read is bounds-checked and
/// every recursion counted, so a corrupt file ends in a `RegionTableError`, never a trap or a hang.
struct MMDBDecoder {
    enum Kind: Int {
        case extended = 0, pointer, string, double, bytes, uint16, uint32, map, int32, uint64, uint128,
             array, dataCacheContainer, endMarker, bool, float
    }

    struct Control {
        var kind: Kind
        var size: Int      // payload size or element count; for pointers, the absolute target offset
        var payload: Int   // offset of the payload (for pointers: of the next value)
    }

    let bytes: [UInt8]
    let base: Int          // pointers are relative to this offset
    let end: Int           // the section ends here
    let path: String
    static let maxDepth = 64
    /// Shared by every decoder of one file (see `MMDBWork`).
    var work = MMDBWork(limit: .max)
    /// Bytes one `decode` may produce (payloads plus 16 per value): pointers can make a small
    /// section describe a huge value, so this is a small multiple of the section's size.
    var decoded = 0
    var decodedLimit: Int { 4 * (end - base) + 65_536 }

    func fail(_ offset: Int, _ problem: String, _ expected: String) -> RegionTableError {
        RegionTableError(path: path, location: .byteOffset(offset), problem: problem, expected: expected)
    }

    func control(at offset: Int) throws -> Control {
        guard offset >= base && offset < end else {
            throw fail(offset, "a data field starts outside its section (\(base)..<\(end))", "an offset inside the section")
        }
        guard work.charge() else {
            throw fail(offset, "reading the data takes more than \(work.limit) steps, more than a file of this size needs (shared or overlapping records)",
                       "a MaxMind DB whose records are read a few times at most")
        }
        var i = offset
        let c = bytes[i]
        i += 1
        var typeNumber = Int(c >> 5)
        if typeNumber == Kind.pointer.rawValue {
            let ss = Int(c >> 3) & 3
            let n = ss + 1
            guard i + n <= end else { throw fail(offset, "a pointer runs past the end of its section", "\(n) pointer bytes") }
            var v = 0
            for k in 0..<n { v = v << 8 | Int(bytes[i + k]) }
            switch ss {
            case 0: v = (Int(c) & 7) << 8 | v
            case 1: v = ((Int(c) & 7) << 16 | v) + 2048
            case 2: v = ((Int(c) & 7) << 24 | v) + 526_336
            default: break
            }
            return Control(kind: .pointer, size: base + v, payload: i + n)
        }
        if typeNumber == 0 {
            guard i < end else { throw fail(offset, "an extended type byte is missing", "a type byte after the control byte") }
            typeNumber = 7 + Int(bytes[i])
            i += 1
            guard typeNumber >= 8 && typeNumber <= 15 else {
                throw fail(offset, "unknown extended data type \(typeNumber)", "a type from 8 (int32) to 15 (float)")
            }
        }
        var size = Int(c & 0x1f)
        if size >= 29 {
            let n = size - 28
            guard i + n <= end else { throw fail(offset, "a size runs past the end of its section", "\(n) size bytes") }
            var v = 0
            for k in 0..<n { v = v << 8 | Int(bytes[i + k]) }
            i += n
            size = [29, 285, 65_821][n - 1] + v
        }
        return Control(kind: Kind(rawValue: typeNumber)!, size: size, payload: i)
    }

    /// Decodes the value at `offset`; returns it and the offset after it (after the pointer, for a pointer).
    mutating func decode(at offset: Int, depth: Int = 0) throws -> (MMDBValue, Int) {
        guard depth < MMDBDecoder.maxDepth else {
            throw fail(offset, "data nested or pointed more than \(MMDBDecoder.maxDepth) levels deep (a pointer loop?)", "a shallower value")
        }
        let c = try control(at: offset)
        // What this value adds to the result; a pointer adds what it points to, charged there.
        let size = c.kind == .pointer || c.kind == .map || c.kind == .array ? 16 : 16 + c.size
        decoded += size
        guard decoded <= decodedLimit else {
            throw fail(offset, "the values expand through pointers to more than \(decodedLimit) bytes (a pointer bomb?)",
                       "values no larger than a few times their section")
        }
        func payload(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
            guard c.payload + n <= end else {
                throw fail(offset, "a \(what) of \(n) bytes runs past the end of its section", "the data to fit in the file")
            }
            return bytes[c.payload..<(c.payload + n)]
        }
        func unsigned(_ maxBytes: Int, _ what: String) throws -> UInt128 {
            guard c.size <= maxBytes else { throw fail(offset, "a \(what) of \(c.size) bytes", "at most \(maxBytes) bytes") }
            var v: UInt128 = 0
            for b in try payload(c.size, what) { v = v << 8 | UInt128(b) }
            return v
        }
        switch c.kind {
        case .pointer:
            let (value, _) = try decode(at: c.size, depth: depth + 1)
            return (value, c.payload)
        case .string:
            return (.string(String(decoding: try payload(c.size, "string"), as: UTF8.self)), c.payload + c.size)
        case .double:
            guard c.size == 8 else { throw fail(offset, "a double of \(c.size) bytes", "8 bytes") }
            return (.double(Double(bitPattern: UInt64(try unsigned(8, "double")))), c.payload + 8)
        case .float:
            guard c.size == 4 else { throw fail(offset, "a float of \(c.size) bytes", "4 bytes") }
            return (.float(Float(bitPattern: UInt32(try unsigned(4, "float")))), c.payload + 4)
        case .bytes:
            return (.bytes(Array(try payload(c.size, "byte string"))), c.payload + c.size)
        case .uint16: return (.uint16(UInt16(try unsigned(2, "uint16"))), c.payload + c.size)
        case .uint32: return (.uint32(UInt32(try unsigned(4, "uint32"))), c.payload + c.size)
        case .uint64: return (.uint64(UInt64(try unsigned(8, "uint64"))), c.payload + c.size)
        case .uint128: return (.uint128(try unsigned(16, "uint128")), c.payload + c.size)
        case .int32: return (.int32(Int32(bitPattern: UInt32(try unsigned(4, "int32")))), c.payload + c.size)
        case .bool:
            guard c.size <= 1 else { throw fail(offset, "a boolean of size \(c.size)", "size 0 or 1") }
            return (.bool(c.size == 1), c.payload)
        case .map:
            var members: [String: MMDBValue] = [:]
            var next = c.payload
            for _ in 0..<c.size {
                let (key, afterKey) = try decode(at: next, depth: depth + 1)
                guard case .string(let name) = key else { throw fail(next, "a map key that is not a string", "a UTF-8 string key") }
                let (value, afterValue) = try decode(at: afterKey, depth: depth + 1)
                members[name] = value
                next = afterValue
            }
            return (.map(members), next)
        case .array:
            var items: [MMDBValue] = []
            var next = c.payload
            for _ in 0..<c.size {
                let (value, after) = try decode(at: next, depth: depth + 1)
                items.append(value)
                next = after
            }
            return (.array(items), next)
        case .dataCacheContainer, .endMarker, .extended:
            throw fail(offset, "a \(c.kind) field in the data", "a pointer, string, number, map, array or boolean")
        }
    }

    /// The offset after the value at `offset`, without building it. Pointers are not followed.
    func skip(at offset: Int, depth: Int = 0) throws -> Int {
        guard depth < MMDBDecoder.maxDepth else { throw fail(offset, "data nested more than \(MMDBDecoder.maxDepth) levels deep", "a shallower value") }
        let c = try control(at: offset)
        switch c.kind {
        case .pointer, .bool: return c.payload
        case .map, .array:
            var next = c.payload
            for _ in 0..<(c.kind == .map ? 2 * c.size : c.size) { next = try skip(at: next, depth: depth + 1) }
            return next
        case .dataCacheContainer, .endMarker, .extended:
            throw fail(offset, "a \(c.kind) field in the data", "a pointer, string, number, map, array or boolean")
        default:
            guard c.payload + c.size <= end else {
                throw fail(offset, "a field of \(c.size) bytes runs past the end of its section", "the data to fit in the file")
            }
            return c.payload + c.size
        }
    }

    /// Follows pointers from `offset` to the value they lead to.
    func resolve(_ offset: Int) throws -> Control {
        try resolved(offset).control
    }

    /// The offset of the value pointers from `offset` lead to, and its control.
    func resolved(_ offset: Int) throws -> (offset: Int, control: Control) {
        var at = offset
        var c = try control(at: offset)
        var hops = 0
        while c.kind == .pointer {
            hops += 1
            guard hops < 8 else { throw fail(offset, "a chain of pointers to pointers", "a pointer to a value") }
            at = c.size
            c = try control(at: at)
        }
        return (at, c)
    }

    func string(at offset: Int) throws -> String? {
        let c = try resolve(offset)
        guard c.kind == .string else { return nil }
        guard c.payload + c.size <= end else { throw fail(offset, "a string runs past the end of its section", "the data to fit in the file") }
        return String(decoding: bytes[c.payload..<(c.payload + c.size)], as: UTF8.self)
    }

    /// Looks for `key` in the map at `offset` (following pointers); returns the offset of its value.
    func member(_ key: String, inMapAt offset: Int) throws -> Int? {
        let c = try resolve(offset)
        guard c.kind == .map else { return nil }
        var next = c.payload
        for _ in 0..<c.size {
            let name = try string(at: next)
            let valueOffset = try skip(at: next)
            if name == key { return valueOffset }
            next = try skip(at: valueOffset)
        }
        return nil
    }

    /// `country.iso_code`, else `registered_country.iso_code`, of the record at `offset`. Records
    /// share their country maps through pointers, so each map's code is looked up once (`isoAt`,
    /// by the map's own offset): no map is scanned once per record that points to it.
    func countryCode(ofRecordAt offset: Int, isoAt: inout [Int: String?]) throws -> String? {
        for key in ["country", "registered_country"] {
            guard let sub = try member(key, inMapAt: offset) else { continue }
            let map = try resolved(sub).offset
            let code: String?
            if let known = isoAt[map] {
                code = known
            } else {
                code = try member("iso_code", inMapAt: map).flatMap { try string(at: $0) }
                isoAt[map] = code
            }
            if let code, !code.isEmpty { return code }
        }
        return nil
    }
}

public struct MMDBMetadata: Sendable {
    public var nodeCount: Int
    public var recordSize: Int
    public var ipVersion: Int
}

/// Reads a whole MaxMind DB file into a country table: one prefix per data record.
enum MMDBReader {
    static let marker = RegionTableFormat.mmdbMarker

    static func metadata(_ bytes: [UInt8], path: String, work: MMDBWork? = nil) throws -> (MMDBMetadata, markerOffset: Int) {
        guard let at = RegionTableFormat.lastIndex(of: marker, in: bytes, searchingLast: 128 * 1024) else {
            throw RegionTableError(path: path, location: .byteOffset(bytes.count),
                                   problem: "no MaxMind DB metadata marker in the last 128 KiB",
                                   expected: "\"\\xAB\\xCD\\xEFMaxMind.com\" followed by the metadata map")
        }
        let start = at + marker.count
        var decoder = MMDBDecoder(bytes: bytes, base: start, end: bytes.count, path: path)
        decoder.work = work ?? MMDBWork(fileSize: bytes.count)
        let (raw, _) = try decoder.decode(at: start)
        func need(_ key: String) throws -> UInt64 {
            guard let v = raw[key]?.unsignedValue else {
                throw RegionTableError(path: path, location: .byteOffset(start), problem: "the metadata has no unsigned \"\(key)\"",
                                       expected: "node_count, record_size and ip_version in the metadata map")
            }
            return v
        }
        guard case .map = raw else {
            throw RegionTableError(path: path, location: .byteOffset(start), problem: "the metadata is not a map", expected: "a metadata map")
        }
        let nodeCount = try need("node_count")
        let recordSize = try need("record_size")
        let ipVersion = try need("ip_version")
        guard [24, 28, 32].contains(recordSize) else {
            throw RegionTableError(path: path, location: .byteOffset(start), problem: "unsupported record_size \(recordSize)",
                                   expected: "24, 28 or 32")
        }
        guard ipVersion == 4 || ipVersion == 6 else {
            throw RegionTableError(path: path, location: .byteOffset(start), problem: "unsupported ip_version \(ipVersion)", expected: "4 or 6")
        }
        guard nodeCount < UInt64(1) << 32 else {
            throw RegionTableError(path: path, location: .byteOffset(start), problem: "node_count \(nodeCount) is too large", expected: "fewer than 2^32 nodes")
        }
        let meta = MMDBMetadata(nodeCount: Int(nodeCount), recordSize: Int(recordSize), ipVersion: Int(ipVersion))
        return (meta, at)
    }

    /// `work` counts what the read does (for tests); its limit is a multiple of the file's size.
    static func read(_ bytes: [UInt8], path: String, name: String, work: MMDBWork? = nil) throws -> RegionTable {
        let work = work ?? MMDBWork(fileSize: bytes.count)
        let (meta, markerOffset) = try metadata(bytes, path: path, work: work)
        let nodeCount = meta.nodeCount
        let nodeBytes = meta.recordSize / 4
        let treeSize = nodeCount * nodeBytes
        guard treeSize + 16 <= markerOffset else {
            throw RegionTableError(path: path, location: .byteOffset(markerOffset),
                                   problem: "a search tree of \(nodeCount) nodes (\(treeSize) bytes) does not fit before the metadata",
                                   expected: "a file holding the whole tree, the 16-byte separator and the data section")
        }
        let dataStart = treeSize + 16
        let dataSize = markerOffset - dataStart
        var decoder = MMDBDecoder(bytes: bytes, base: dataStart, end: markerOffset, path: path)
        decoder.work = work

        func record(_ node: Int, _ right: Bool) -> Int {
            let o = node * nodeBytes
            switch meta.recordSize {
            case 24:
                let s = right ? o + 3 : o
                return Int(bytes[s]) << 16 | Int(bytes[s + 1]) << 8 | Int(bytes[s + 2])
            case 28:
                let middle = Int(bytes[o + 3])
                if right { return (middle & 0x0f) << 24 | Int(bytes[o + 4]) << 16 | Int(bytes[o + 5]) << 8 | Int(bytes[o + 6]) }
                return (middle & 0xf0) << 20 | Int(bytes[o]) << 16 | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2])
            default:
                let s = right ? o + 4 : o
                return Int(bytes[s]) << 24 | Int(bytes[s + 1]) << 16 | Int(bytes[s + 2]) << 8 | Int(bytes[s + 3])
            }
        }

        // In an IPv6 tree, IPv4 lives under ::/96; other paths to that node (::ffff:0:0/96,
        // 2002::/16) are aliases and are not walked again.
        var ipv4Node = -1
        if meta.ipVersion == 6 && nodeCount > 0 {
            var n = 0
            for _ in 0..<96 where n < nodeCount { n = record(n, false) }
            ipv4Node = n
        }

        var builder = TableBuilder()
        var regionAt: [Int: UInt32?] = [:]       // by the record's offset, and by where its pointers lead
        var isoAt: [Int: String?] = [:]
        let startDepth = meta.ipVersion == 6 ? 0 : 96
        let startBits: UInt128 = meta.ipVersion == 6 ? 0 : IPAddress.v4MappedBase
        // Depth-first, left before right, so prefixes come out in address order (which lets the
        // builder skip its duplicate set). Each stack item is a record reached at `depth` bits.
        var stack: [(record: Int, depth: Int, bits: UInt128)] = nodeCount > 0 ? [(0, startDepth, startBits)] : []
        var visits = 0
        let maxVisits = 4 * nodeCount + 1024
        let mappedSubtree: UInt128 = IPAddress.v4MappedBase

        while let item = stack.popLast() {
            let (rec, depth, bits) = item
            if rec < nodeCount {
                if meta.ipVersion == 6 && depth == 96 && bits == mappedSubtree { continue }
                if rec == ipv4Node && depth > 0 && !(depth == 96 && bits == 0) { continue }
                visits += 1
                _ = work.charge()
                guard visits <= maxVisits else {
                    throw RegionTableError(path: path, location: .byteOffset(rec * nodeBytes),
                                           problem: "the search tree reaches its nodes many times over (shared or cyclic subtrees)",
                                           expected: "a tree")
                }
                guard depth < 128 else {
                    throw RegionTableError(path: path, location: .byteOffset(rec * nodeBytes),
                                           problem: "the search tree is deeper than \(128 - startDepth) bits (a cycle?) at node \(rec)",
                                           expected: "a tree whose leaves are at most \(128 - startDepth) bits deep")
                }
                stack.append((record(rec, true), depth + 1, bits | UInt128(1) << (127 - depth)))
                stack.append((record(rec, false), depth + 1, bits))
                continue
            }
            if rec == nodeCount { continue } // no data
            let dataOffset = rec - nodeCount - 16
            guard dataOffset >= 0 && dataOffset < dataSize else {
                throw RegionTableError(path: path, location: .byteOffset(dataStart - 16),
                                       problem: "a record of value \(rec) at \(IPPrefix(unchecked: bits, bits128: depth)) points beyond the \(nodeCount) nodes and the \(dataSize)-byte data section",
                                       expected: "a node index below node_count or a pointer into the data section")
            }
            let region: UInt32?
            if let cached = regionAt[dataStart + dataOffset] {
                region = cached
            } else {
                let record = try decoder.resolved(dataStart + dataOffset).offset
                if let cached = regionAt[record] {
                    region = cached
                } else {
                    region = try decoder.countryCode(ofRecordAt: record, isoAt: &isoAt).map { builder.region($0) }
                    regionAt[record] = region
                }
                regionAt[dataStart + dataOffset] = region
            }
            guard let region else { continue }
            if meta.ipVersion == 6 && depth >= 96 && bits >> 32 == 0 {
                builder.add(IPPrefix(unchecked: bits | IPAddress.v4MappedBase, bits128: depth), region: region)
            } else {
                builder.add(IPPrefix(unchecked: bits, bits128: depth), region: region)
                // A record above ::/96 also answers every IPv4 address.
                if meta.ipVersion == 6 && depth < 96 && bits == 0 {
                    builder.add(IPPrefix(unchecked: IPAddress.v4MappedBase, bits128: 96), region: region)
                }
            }
        }
        return RegionTable(name: name, source: path, entries: builder.entries)
    }
}
