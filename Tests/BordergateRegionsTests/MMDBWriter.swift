@testable import BordergateRegions

/// A small MaxMind DB writer for tests: builds search trees of any record size (including broken
/// ones) and encodes every data type, with pointers of each size.
struct MMDBWriter {
    enum Record: Equatable {
        case node(Int)
        case empty
        case data(Int)      // offset into the data section
        case raw(Int)       // written as is (for broken trees)
    }

    indirect enum Value {
        case pointer(Int, size: Int? = nil)   // size 1...4 forces the pointer's SS bits
        case string(String)
        case double(Double)
        case bytes([UInt8])
        case uint16(UInt16)
        case uint32(UInt32)
        case map([(String, Value)])
        case int32(Int32)
        case uint64(UInt64)
        case uint128(UInt128)
        case array([Value])
        case dataCacheContainer
        case endMarker
        case bool(Bool)
        case float(Float)
        case raw([UInt8])
    }

    var recordSize = 24
    var ipVersion = 6
    var nodes: [(left: Record, right: Record)] = [(.empty, .empty)]
    var data: [UInt8] = []
    var metadataExtra: [(String, Value)] = []
    var nodeCountOverride: Int?
    var recordSizeOverride: Int?

    init(recordSize: Int = 24, ipVersion: Int = 6) {
        self.recordSize = recordSize
        self.ipVersion = ipVersion
    }

    /// Appends a value to the data section; returns its offset.
    @discardableResult
    mutating func add(_ value: Value) -> Int {
        let at = data.count
        MMDBWriter.encode(value, into: &data)
        return at
    }

    /// A record in the usual shape: {"country": {"iso_code": cc}, ...}.
    mutating func addCountry(_ cc: String?, registered: String? = nil) -> Int {
        var members: [(String, Value)] = [("continent", .map([("code", .string("EU"))]))]
        if let cc { members.append(("country", .map([("geoname_id", .uint32(1)), ("iso_code", .string(cc)), ("names", .map([("en", .string("Somewhere"))]))]))) }
        if let registered { members.append(("registered_country", .map([("iso_code", .string(registered))]))) }
        return add(.map(members))
    }

    /// Inserts a network given by its top-aligned bits in the tree's own width.
    mutating func insert(bits: UInt128, length: Int, dataOffset: Int) {
        var node = 0
        for d in 0..<length {
            let right = (bits >> (127 - d)) & 1 == 1
            let isLast = d == length - 1
            let current = right ? nodes[node].right : nodes[node].left
            if isLast {
                set(node, right, .data(dataOffset))
                return
            }
            if case .node(let next) = current {
                node = next
            } else {
                nodes.append((.empty, .empty))
                let next = nodes.count - 1
                set(node, right, .node(next))
                node = next
            }
        }
    }

    mutating func set(_ node: Int, _ right: Bool, _ record: Record) {
        if right { nodes[node].right = record } else { nodes[node].left = record }
    }

    mutating func insert(_ prefix: String, dataOffset: Int) {
        let p = IPPrefix(prefix)!
        if ipVersion == 4 {
            insert(bits: UInt128(p.address.ipv4!) << 96, length: p.length, dataOffset: dataOffset)
        } else if let v4 = p.address.ipv4 {
            insert(bits: UInt128(v4), length: p.length + 96, dataOffset: dataOffset)
        } else {
            insert(bits: p.address.value, length: p.length, dataOffset: dataOffset)
        }
    }

    /// The node that ::/96 leads to (creating the path), for aliasing ::ffff:0:0/96 to it.
    mutating func aliasIPv4(fromPrefixBits bits: UInt128, length: Int) {
        var node = 0
        for _ in 0..<96 {
            guard case .node(let next) = nodes[node].left else { return }
            node = next
        }
        var at = 0
        for d in 0..<(length - 1) {
            let right = (bits >> (127 - d)) & 1 == 1
            let current = right ? nodes[at].right : nodes[at].left
            if case .node(let next) = current { at = next; continue }
            nodes.append((.empty, .empty))
            set(at, right, .node(nodes.count - 1))
            at = nodes.count - 1
        }
        set(at, (bits >> (128 - length)) & 1 == 1, .node(node))
    }

    func build() -> [UInt8] {
        let nodeCount = nodeCountOverride ?? nodes.count
        var out: [UInt8] = []
        func value(_ r: Record) -> Int {
            switch r {
            case .node(let n): return n
            case .empty: return nodeCount
            case .data(let off): return nodeCount + 16 + off
            case .raw(let v): return v
            }
        }
        for (l, r) in nodes {
            let a = value(l), b = value(r)
            switch recordSize {
            case 24:
                out += [UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff), UInt8(b >> 16 & 0xff), UInt8(b >> 8 & 0xff), UInt8(b & 0xff)]
            case 28:
                out += [UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff),
                        UInt8((a >> 24 & 0xf) << 4 | (b >> 24 & 0xf)),
                        UInt8(b >> 16 & 0xff), UInt8(b >> 8 & 0xff), UInt8(b & 0xff)]
            default:
                out += [UInt8(a >> 24 & 0xff), UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff),
                        UInt8(b >> 24 & 0xff), UInt8(b >> 16 & 0xff), UInt8(b >> 8 & 0xff), UInt8(b & 0xff)]
            }
        }
        out += [UInt8](repeating: 0, count: 16)
        out += data
        out += [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
        var meta: [(String, Value)] = [
            ("node_count", .uint32(UInt32(nodeCount))),
            ("record_size", .uint16(UInt16(recordSizeOverride ?? recordSize))),
            ("ip_version", .uint16(UInt16(ipVersion))),
            ("database_type", .string("Test-Country")),
            ("languages", .array([.string("en")])),
            ("binary_format_major_version", .uint16(2)),
            ("binary_format_minor_version", .uint16(0)),
            ("build_epoch", .uint64(1_700_000_000)),
            ("description", .map([("en", .string("test database"))])),
        ]
        meta.append(contentsOf: metadataExtra)
        MMDBWriter.encode(.map(meta), into: &out)
        return out
    }

    static func control(_ type: Int, _ size: Int, into out: inout [UInt8]) {
        let sizeBits: Int, extra: [UInt8]
        switch size {
        case ..<29: sizeBits = size; extra = []
        case ..<285: sizeBits = 29; extra = [UInt8(size - 29)]
        case ..<65_821: let v = size - 285; sizeBits = 30; extra = [UInt8(v >> 8), UInt8(v & 0xff)]
        default: let v = size - 65_821; sizeBits = 31; extra = [UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        }
        if type <= 7 {
            out.append(UInt8(type << 5 | sizeBits))
        } else {
            out.append(UInt8(sizeBits))
            out.append(UInt8(type - 7))
        }
        out += extra
    }

    static func bigEndian(_ v: UInt128, _ n: Int) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * (n - 1 - $0))) }
    }

    static func minimal(_ v: UInt128) -> [UInt8] {
        var bytes = bigEndian(v, 16)
        while let f = bytes.first, f == 0 { bytes.removeFirst() }
        return bytes
    }

    static func encode(_ value: Value, into out: inout [UInt8]) {
        switch value {
        case .pointer(let target, let forced):
            let size = forced ?? (target < 2048 ? 1 : target < 526_336 ? 2 : target < 134_744_064 ? 3 : 4)
            switch size {
            case 1: out += [UInt8(0x20 | (target >> 8 & 7)), UInt8(target & 0xff)]
            case 2: let v = target - 2048; out += [UInt8(0x28 | (v >> 16 & 7)), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
            case 3: let v = target - 526_336; out += [UInt8(0x30 | (v >> 24 & 7)), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
            default: out += [0x38] + bigEndian(UInt128(target), 4)
            }
        case .string(let s): control(2, s.utf8.count, into: &out); out += Array(s.utf8)
        case .double(let d): control(3, 8, into: &out); out += bigEndian(UInt128(d.bitPattern), 8)
        case .bytes(let b): control(4, b.count, into: &out); out += b
        case .uint16(let v): let b = minimal(UInt128(v)); control(5, b.count, into: &out); out += b
        case .uint32(let v): let b = minimal(UInt128(v)); control(6, b.count, into: &out); out += b
        case .map(let members):
            control(7, members.count, into: &out)
            for (k, v) in members { encode(.string(k), into: &out); encode(v, into: &out) }
        case .int32(let v): let b = minimal(UInt128(UInt32(bitPattern: v))); control(8, b.count, into: &out); out += b
        case .uint64(let v): let b = minimal(UInt128(v)); control(9, b.count, into: &out); out += b
        case .uint128(let v): let b = minimal(v); control(10, b.count, into: &out); out += b
        case .array(let items):
            control(11, items.count, into: &out)
            for v in items { encode(v, into: &out) }
        case .dataCacheContainer: control(12, 0, into: &out)
        case .endMarker: control(13, 0, into: &out)
        case .bool(let b): control(14, b ? 1 : 0, into: &out)
        case .float(let f): control(15, 4, into: &out); out += bigEndian(UInt128(f.bitPattern), 4)
        case .raw(let b): out += b
        }
    }
}
