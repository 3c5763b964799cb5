import Testing
@testable import BordergateRegions

/// Hostile inputs found by fuzzing and by crafting: each reader refuses them with one line, and
/// what it allocates and does stays a small multiple of the input's size.
@Suite struct BoundsTests {
    func expectRefused(_ body: () throws -> Void, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try body()
            Issue.record("expected an error containing \(fragment)", sourceLocation: sourceLocation)
        } catch let e as RegionTableError {
            #expect(e.description.contains(fragment), "\(e)", sourceLocation: sourceLocation)
            #expect(e.description.contains("; expected "), "\(e)", sourceLocation: sourceLocation)
            #expect(!e.description.contains("\n"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: compiled tables

    /// A compiled file with a valid checksum around `payload`.
    static func forge(tables: UInt32, _ payload: [UInt8]) -> [UInt8] {
        var file = CompiledRegionTables.magic
        withUnsafeBytes(of: UInt32(1).littleEndian) { file += $0 }
        withUnsafeBytes(of: tables.littleEndian) { file += $0 }
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { file += $0 }
        withUnsafeBytes(of: CompiledRegionTables.fnv1a64(payload[...]).littleEndian) { file += $0 }
        return file + payload
    }

    static func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// The 384-byte file that made `regions compile` try to allocate 85 GB: a table header
    /// announcing 2^32-1 entries of each family.
    @Test func compiledCountsLargerThanTheFile() {
        var payload = Self.le32(1) + Self.le32(1) + Array("x".utf8) + [0, 0, 0]
        payload += Self.le32(0) + Self.le32(0) + Self.le32(.max) + Self.le32(.max)
        payload += [UInt8](repeating: 0, count: 352 - payload.count)
        let file = Self.forge(tables: 1, payload)
        #expect(file.count == 384)
        expectRefused({ _ = try CompiledRegionTables.decode(file, path: "t.bgrt") }, "t.bgrt: at byte 52: table 1 announces 4294967295 IPv4")
        // Counts that fit one by one but not together, across tables.
        var two = Self.le32(1) + Self.le32(1) + Array("x".utf8) + [0, 0, 0]
        two += Self.le32(0) + Self.le32(0) + Self.le32(20) + Self.le32(0)
        two += Self.le32(0) + Self.le32(0) + Self.le32(20) + Self.le32(0)
        two += [UInt8](repeating: 0, count: 200)
        expectRefused({ _ = try CompiledRegionTables.decode(Self.forge(tables: 2, two), path: "t.bgrt") }, "table 2 announces 20 IPv4")
        // A table count beyond the file.
        expectRefused({ _ = try CompiledRegionTables.decode(Self.forge(tables: .max, Self.le32(0) + [UInt8](repeating: 0, count: 64)), path: "t.bgrt") },
                      "the table headers runs past the end")
    }

    // MARK: text tables

    @Test func manyDistinctRegionNamesStayLinear() throws {
        var text = ""
        for i in 0..<20_000 { text += "10.\(i >> 8).\(i & 0xff).0/24,r\(i)\n" }
        let clock = ContinuousClock()
        let start = clock.now
        let t = try RegionTableReader.read(bytes: bytes(text), path: "f.csv", format: .cidrCSV).first!
        let took = clock.now - start
        #expect(t.entries.count == 20_000)
        #expect(Set(t.entries.map(\.region)).count == 20_000)
        // A search per new name took 12 s here; a dictionary takes well under a second.
        #expect(took < .seconds(3), "\(took)")
    }

    @Test func rangesThatSplitIntoFarMorePrefixesThanTheFileHolds() throws {
        // Each 46-byte line splits into 254 prefixes: 100 lines would make 25,400 entries.
        var text = ""
        for i in 0..<100 { text += "::1,ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe,X\(i)\n" }
        expectRefused({ _ = try RegionTableReader.read(bytes: bytes(text), path: "geoip6", format: .rangeCSV) }, "geoip6:")
        expectRefused({ _ = try RegionTableReader.read(bytes: bytes(text), path: "geoip6", format: .rangeCSV) }, "prefixes")
        // One such line is fine: real lists have a few of them.
        #expect(try RegionTableReader.read(bytes: bytes("::1,ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe,DE\n"), path: "geoip6", format: .rangeCSV)
            .first!.entries.count == 254)
    }

    @Test func errorsStayOneLineWhateverTheyQuote() {
        let e = RegionTableError(path: "t\r\nx", location: .line(3), problem: "a\r\nb\rc\nd\u{2028}e", expected: "f")
        #expect(!e.description.utf8.contains(10) && !e.description.utf8.contains(13), "\(e)")
        #expect(e.description == "t x:3: a b c d e; expected f")
    }

    // MARK: JSON

    @Test func loneSurrogatesKeepWhatFollows() throws {
        func decode(_ s: String) throws -> String? { try JSONParser.parse(bytes("\"" + s + "\"")).stringValue }
        #expect(try decode(#"\ud800\u0041"#) == "\u{FFFD}A")
        #expect(try decode(#"\ud800\ud83d\ude00x"#) == "\u{FFFD}😀x")
        #expect(try decode(#"\ud800\ud800\u00e9"#) == "\u{FFFD}\u{FFFD}é")
        #expect(try decode(#"\ud800\udc00"#) == "\u{10000}")
        #expect(try decode(#"\udc00\u0042"#) == "\u{FFFD}B")
        #expect(try decode(#"\ud800x"#) == "\u{FFFD}x")
        #expect(try decode(#"a\ud800"#) == "a\u{FFFD}")
    }

    // MARK: MaxMind DB

    func readMMDB(_ bytes: [UInt8], _ work: MMDBWork) throws -> RegionTable {
        try MMDBReader.read(bytes, path: "t.mmdb", name: "t", work: work)
    }

    /// The metadata map's offset of the first byte of `needle` (a member's key and value).
    static func metadataOffset(of needle: [UInt8], in file: [UInt8]) -> Int {
        let marker = RegionTableFormat.lastIndex(of: RegionTableFormat.mmdbMarker, in: file, searchingLast: 1 << 20)!
        let start = marker + RegionTableFormat.mmdbMarker.count
        var i = start
        while !file[i...].starts(with: needle) { i += 1 }
        return i - start
    }

    /// A pointer of the short form (to an offset below 2048), as raw bytes.
    static func pointer(_ at: Int) -> MMDBWriter.Value {
        precondition(at < 2048)
        return .raw([0x20 | UInt8(at >> 8), UInt8(at & 0xff)])
    }

    /// An array of `items`, encoded here.
    static func array(_ items: [MMDBWriter.Value]) -> MMDBWriter.Value {
        var out: [UInt8] = []
        MMDBWriter.control(11, items.count, into: &out)
        for item in items { MMDBWriter.encode(item, into: &out) }
        return .raw(out)
    }

    /// A small valid tree with extra metadata members from `extra`, which gets the metadata
    /// offsets of what it added so far (pointers in the metadata are relative to its start).
    static func withMetadata(_ extra: (inout [(String, MMDBWriter.Value)], ([(String, MMDBWriter.Value)], String) -> Int) -> Void) -> [UInt8] {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        let record = w.addCountry("DE")
        w.insert("192.0.2.0/24", dataOffset: record)
        var members: [(String, MMDBWriter.Value)] = []
        func valueOffset(_ members: [(String, MMDBWriter.Value)], _ key: String) -> Int {
            var probe = w
            probe.metadataExtra = members
            let keyBytes: [UInt8] = [UInt8(0x40 | key.utf8.count)] + Array(key.utf8)
            return metadataOffset(of: keyBytes, in: probe.build()) + keyBytes.count
        }
        extra(&members, valueOffset)
        w.metadataExtra = members
        return w.build()
    }

    /// Metadata whose pointers repeat one large string thousands of times (the 78 KB file took
    /// 92 s and 23.8 GB): refused once the decoded values pass a few times the section's size.
    @Test func metadataPointerBomb() throws {
        let file = Self.withMetadata { members, offset in
            members.append(("blob", MMDBWriter.Value.string(String(repeating: "b", count: 60_000))))
            let blob = offset(members, "blob")
            members.append(("bomb", Self.array(Array(repeating: Self.pointer(blob), count: 6_000))))
        }
        #expect(file.count < 80_000)
        let work = MMDBWork(fileSize: file.count)
        expectRefused({ _ = try readMMDB(file, work) }, "expand through pointers")
        #expect(work.used < file.count, "\(work.used) steps for \(file.count) bytes")
    }

    /// Pointers to arrays of pointers: a value that doubles at each level (2^18 values here).
    @Test func metadataDoublingPointers() throws {
        let file = Self.withMetadata { members, offset in
            members.append(("l0", MMDBWriter.Value.string("x")))
            // Up to 28 members in all, so the map's size keeps its one-byte form and the offsets hold.
            for k in 1...18 {
                let at = offset(members, "l\(k - 1)")
                members.append(("l\(k)", Self.array([Self.pointer(at), Self.pointer(at)])))
            }
        }
        let work = MMDBWork(fileSize: file.count)
        expectRefused({ _ = try readMMDB(file, work) }, "expand through pointers")
        #expect(work.used < 70_000 + file.count, "\(work.used) steps for \(file.count) bytes")
    }

    /// Many records pointing to one large country map: it is scanned once, not once per record
    /// (the work grew with the square of the file's size).
    @Test func sharedCountryMapIsScannedOnce() throws {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        var members: [(String, MMDBWriter.Value)] = []
        for i in 0..<5_000 { members.append(("k\(i)", MMDBWriter.Value.bool(true))) }
        members.append(("iso_code", .string("DE")))
        let big = w.add(.map(members))
        for i in 0..<2_000 {
            let record = w.add(.map([("country", .pointer(big))]))
            w.insert("10.0.\(i >> 8).\(i & 0xff)/32", dataOffset: record)
        }
        let file = w.build()
        let work = MMDBWork(fileSize: file.count)
        let t = try readMMDB(file, work)
        #expect(t.entries.count == 2_000)
        #expect(Set(t.entries.map(\.region)) == ["DE"])
        #expect(work.used < file.count, "\(work.used) steps for \(file.count) bytes")
    }

    /// Records nested in one another, each scanned in full by the record above it: refused once
    /// the reading passes a few times the file's size.
    @Test func overlappingRecordsAreRefused() {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        let levels = 60, fillers = 200
        var offsets: [Int] = []
        for k in 0..<levels {
            offsets.append(w.data.count)
            let last = k == levels - 1
            MMDBWriter.control(7, fillers + (last ? 0 : 1), into: &w.data)
            for _ in 0..<fillers { MMDBWriter.encode(.string("f"), into: &w.data); MMDBWriter.encode(.uint16(1), into: &w.data) }
            if !last { MMDBWriter.encode(.string("next"), into: &w.data) }   // its value: the next level
        }
        for (k, at) in offsets.enumerated() { w.insert("10.0.0.\(k)/32", dataOffset: at) }
        let file = w.build()
        let work = MMDBWork(fileSize: file.count)
        expectRefused({ _ = try readMMDB(file, work) }, "steps")
        #expect(work.used <= work.limit + 1)
        #expect(work.limit == 8 * file.count + 65_536)
    }

    /// A tree of many leaves, each with its own country code (the 66 KB tree took 5.3 s).
    @Test func manyDistinctCountriesInATree() throws {
        var w = MMDBWriter(recordSize: 24, ipVersion: 4)
        for i in 0..<4_000 {
            let record = w.add(.map([("country", .map([("iso_code", .string("c\(i)"))]))]))
            w.insert("10.\(i >> 8).\(i & 0xff).0/24", dataOffset: record)
        }
        let file = w.build()
        let work = MMDBWork(fileSize: file.count)
        let t = try readMMDB(file, work)
        #expect(t.entries.count == 4_000)
        #expect(work.used < 2 * file.count, "\(work.used) steps for \(file.count) bytes")
    }
}
