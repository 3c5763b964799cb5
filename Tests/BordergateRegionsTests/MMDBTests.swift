import Testing
@testable import BordergateRegions

@Suite struct MMDBTests {
    func read(_ bytes: [UInt8]) throws -> RegionTable {
        try RegionTableReader.read(bytes: bytes, path: "test.mmdb", format: .mmdb).first!
    }

    func pairs(_ t: RegionTable) -> Set<String> {
        Set(t.entries.map { "\($0.prefix)=\($0.region)" })
    }

    @Test(arguments: [24, 28, 32])
    func ipv4Tree(recordSize: Int) throws {
        var w = MMDBWriter(recordSize: recordSize, ipVersion: 4)
        let de = w.addCountry("de")
        let us = w.addCountry(nil, registered: "US")
        let none = w.addCountry(nil)
        w.insert("198.51.100.0/25", dataOffset: de)
        w.insert("198.51.100.128/26", dataOffset: us)
        w.insert("203.0.113.0/24", dataOffset: none)
        w.insert("0.0.0.0/1", dataOffset: de)
        let bytes = w.build()
        #expect(RegionTableFormat.detect(path: "x.bin", bytes: bytes) == .mmdb)
        let t = try read(bytes)
        #expect(pairs(t) == ["198.51.100.0/25=DE", "198.51.100.128/26=US", "0.0.0.0/1=DE"])
        #expect(t.name == "test")
    }

    @Test(arguments: [24, 28, 32])
    func ipv6TreeWithIPv4Subtree(recordSize: Int) throws {
        var w = MMDBWriter(recordSize: recordSize, ipVersion: 6)
        let jp = w.addCountry("JP")
        let fr = w.addCountry("FR")
        w.insert("2001:200::/23", dataOffset: jp)
        w.insert("192.0.2.0/24", dataOffset: fr)
        w.insert("10.0.0.0/8", dataOffset: jp)
        // The usual aliases onto the IPv4 subtree must not yield IPv6 duplicates.
        w.aliasIPv4(fromPrefixBits: UInt128(0xffff) << 32, length: 96)
        w.aliasIPv4(fromPrefixBits: UInt128(0x2002) << 112, length: 16)
        let t = try read(w.build())
        #expect(pairs(t) == ["2001:200::/23=JP", "192.0.2.0/24=FR", "10.0.0.0/8=JP"])
        let db = RegionDatabase(tables: [t])
        #expect(db.lookup(IPAddress("192.0.2.77")!)?.region == "FR")
        #expect(db.lookup(IPAddress("2001:201::1")!)?.region == "JP")
        #expect(db.lookup(IPAddress("2002:c000:0201::1")!) == nil)
    }

    @Test func recordValuesAbove24BitsIn28And32BitTrees() throws {
        for size in [28, 32] {
            var w = MMDBWriter(recordSize: size, ipVersion: 4)
            w.add(.raw([UInt8](repeating: 0, count: 1 << 24)))   // pushes the record past 2^24
            let far = w.addCountry("NL")
            w.insert("100.64.0.0/10", dataOffset: far)
            #expect(far + 1 + 16 > 1 << 24)
            #expect(try pairs(read(w.build())) == ["100.64.0.0/10=NL"])
        }
    }

    @Test func everyDataTypeDecodes() throws {
        var w = MMDBWriter()
        w.add(.raw([UInt8](repeating: 0, count: 600_000)))    // room for 3- and 4-byte pointers
        let shortTarget = 100                                 // inside the padding: overwrite it
        var small: [UInt8] = []
        MMDBWriter.encode(.string("near"), into: &small)
        w.data.replaceSubrange(shortTarget..<(shortTarget + small.count), with: small)
        let mid = w.add(.string("middle"))                   // > 2048: two-byte pointer
        let farValue = w.add(.uint32(4242))                  // > 526336: three-byte pointer
        let long = String(repeating: "x", count: 70_000)
        let all: MMDBWriter.Value = .map([
            ("string", .string("grüße")),
            ("long", .string(long)),
            ("medium", .string(String(repeating: "y", count: 300))),
            ("double", .double(-2.5)),
            ("bytes", .bytes([0, 1, 255])),
            ("uint16", .uint16(65535)),
            ("uint32", .uint32(4_000_000_000)),
            ("int32", .int32(-17)),
            ("uint64", .uint64(UInt64.max)),
            ("uint128", .uint128(UInt128.max - 5)),
            ("array", .array([.bool(true), .bool(false), .float(1.5)])),
            ("p1", .pointer(shortTarget)),
            ("p2", .pointer(mid)),
            ("p3", .pointer(farValue)),
            ("p4", .pointer(mid, size: 4)),
            ("zero", .uint32(0)),
        ])
        let at = w.add(all)
        let bytes = w.data
        var d = MMDBDecoder(bytes: bytes, base: 0, end: bytes.count, path: "t")
        let (value, next) = try d.decode(at: at)
        #expect(next == bytes.count)
        #expect(value["string"] == .string("grüße"))
        #expect(value["long"] == .string(long))
        #expect(value["medium"] == .string(String(repeating: "y", count: 300)))
        #expect(value["double"] == .double(-2.5))
        #expect(value["bytes"] == .bytes([0, 1, 255]))
        #expect(value["uint16"] == .uint16(65535))
        #expect(value["uint32"] == .uint32(4_000_000_000))
        #expect(value["int32"] == .int32(-17))
        #expect(value["uint64"] == .uint64(.max))
        #expect(value["uint128"] == .uint128(UInt128.max - 5))
        #expect(value["array"] == .array([.bool(true), .bool(false), .float(1.5)]))
        #expect(value["p1"] == .string("near"))
        #expect(value["p2"] == .string("middle"))
        #expect(value["p3"] == .uint32(4242))
        #expect(value["p4"] == .string("middle"))
        #expect(value["zero"] == .uint32(0))
        // The targeted walk used for records skips over all of it.
        #expect(try d.skip(at: at) == bytes.count)
        // Internal-only types are not data.
        for bad: MMDBWriter.Value in [.dataCacheContainer, .endMarker] {
            var out: [UInt8] = []
            MMDBWriter.encode(bad, into: &out)
            var d2 = MMDBDecoder(bytes: out, base: 0, end: out.count, path: "t")
            #expect(throws: RegionTableError.self) { try d2.decode(at: 0) }
        }
    }

    @Test func recordsReachedThroughPointers() throws {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        let iso = w.add(.string("SE"))
        let country = w.add(.map([("iso_code", .pointer(iso))]))
        let key = w.add(.string("country"))
        let record = w.add(.map([("names", .array([.string("a"), .pointer(iso)])), ("country", .pointer(country))]))
        let viaPointer = w.add(.map([(String(), .bool(true)), ("x", .uint16(1))]))
        _ = viaPointer
        // A record whose key is itself a pointer to a string.
        var keyed: [UInt8] = []
        MMDBWriter.control(7, 1, into: &keyed)
        MMDBWriter.encode(.pointer(key), into: &keyed)
        MMDBWriter.encode(.pointer(country), into: &keyed)
        let keyedRecord = w.data.count
        w.data += keyed
        let recordPointer = w.add(.pointer(record))
        w.insert("192.0.2.0/25", dataOffset: record)
        w.insert("192.0.2.128/25", dataOffset: keyedRecord)
        w.insert("198.51.100.0/24", dataOffset: recordPointer)
        #expect(try pairs(read(w.build())) == ["192.0.2.0/25=SE", "192.0.2.128/25=SE", "198.51.100.0/24=SE"])
    }

    // MARK: corrupt files: one clear error line, never a crash or a hang

    func expectError(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try read(bytes)
            Issue.record("expected an error containing \(fragment)", sourceLocation: sourceLocation)
        } catch let error as RegionTableError {
            let line = error.description
            #expect(line.hasPrefix("test.mmdb: at byte "), sourceLocation: sourceLocation)
            #expect(line.contains(fragment), "\(line)", sourceLocation: sourceLocation)
            #expect(line.contains("; expected "), sourceLocation: sourceLocation)
            #expect(!line.contains("\n"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    func small() -> MMDBWriter {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        let de = w.addCountry("DE")
        w.insert("192.0.2.0/24", dataOffset: de)
        return w
    }

    @Test func missingMetadata() {
        var bytes = small().build()
        if let at = RegionTableFormat.lastIndex(of: RegionTableFormat.mmdbMarker, in: bytes, searchingLast: 1 << 20) {
            bytes[at + 3] = UInt8(ascii: "m")
        }
        expectError(bytes, "no MaxMind DB metadata marker")
        expectError([], "no MaxMind DB metadata marker")
    }

    @Test func truncatedFiles() {
        let full = small().build()
        let marker = RegionTableFormat.lastIndex(of: RegionTableFormat.mmdbMarker, in: full, searchingLast: 1 << 20)!
        // Cut inside the metadata map, and cut everything before the metadata away.
        for cut in [full.count - 1, full.count - 20, marker + 15] {
            expectError(Array(full[..<cut]), "")
        }
        expectError(Array(full[(marker - 3)...]), "does not fit before the metadata")
    }

    @Test func unsupportedRecordSize() {
        var w = small()
        w.recordSizeOverride = 20
        expectError(w.build(), "unsupported record_size 20")
    }

    @Test func nodeIndexBeyondNodeCount() {
        var w = small()
        w.set(0, false, .raw(w.nodes.count + 5))        // inside the 16-byte separator
        expectError(w.build(), "beyond the")
        var w2 = small()
        w2.set(0, true, .raw(w2.nodes.count + 16 + w2.data.count + 100))
        expectError(w2.build(), "beyond the")
    }

    @Test func nodeCountLargerThanTheFile() {
        var w = small()
        w.nodeCountOverride = 1_000_000
        expectError(w.build(), "does not fit before the metadata")
    }

    @Test func cyclicTree() {
        var w = small()
        w.set(w.nodes.count - 1, false, .node(0))
        expectError(w.build(), "deeper than 32 bits")
        var w6 = MMDBWriter(recordSize: 28, ipVersion: 6)
        w6.nodes = [(.node(1), .empty), (.node(0), .node(1))]
        expectError(w6.build(), "")
    }

    @Test func badPointersInData() {
        // A pointer out of the data section.
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        let rec = w.add(.map([("country", .pointer(50_000))]))
        w.insert("192.0.2.0/24", dataOffset: rec)
        expectError(w.build(), "outside its section")
        // A pointer to itself, and a map that contains a pointer to itself.
        var w2 = MMDBWriter(recordSize: 24, ipVersion: 4)
        let selfPointer = w2.data.count
        w2.add(.pointer(selfPointer))
        w2.insert("192.0.2.0/24", dataOffset: selfPointer)
        expectError(w2.build(), "pointers to pointers")
        var w3 = MMDBWriter(recordSize: 24, ipVersion: 4)
        let loop = w3.data.count
        w3.add(.map([("country", .pointer(loop))]))
        w3.insert("192.0.2.0/24", dataOffset: loop)
        // Following "country" -> the same map -> no iso_code: ends without a region, not in a loop.
        #expect(throws: Never.self) { _ = try read(w3.build()) }
        var d = MMDBDecoder(bytes: w3.data, base: 0, end: w3.data.count, path: "t")
        #expect(throws: RegionTableError.self) { _ = try d.decode(at: loop) }
    }

    @Test func sizesRunningPastTheEnd() {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        var rec: [UInt8] = []
        MMDBWriter.control(7, 1, into: &rec)
        MMDBWriter.encode(.string("names"), into: &rec)
        MMDBWriter.control(2, 60_000, into: &rec)   // a string far longer than the file
        w.data = rec
        w.insert("192.0.2.0/24", dataOffset: 0)
        expectError(w.build(), "past the end")
    }

    @Test func metadataWithoutNodeCount() {
        var bytes: [UInt8] = [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)
        MMDBWriter.encode(.map([("record_size", .uint16(24)), ("ip_version", .uint16(4))]), into: &bytes)
        expectError(bytes, "node_count")
    }
}
