import Testing
@testable import BordergateRegions

@Suite struct CompiledTests {
    let tables = [
        table("cloud", [("198.51.100.0/24", "aws:eu-central-1"), ("2001:db8::/48", "gcp:europe-west3"), ("0.0.0.0/0", "US")]),
        table("geo", [("198.51.100.0/25", "FR"), ("::/0", "NO"), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "SE"), ("10.0.0.1/32", "FR")]),
        table("empty", []),
    ]

    @Test func roundTrip() throws {
        let bytes = CompiledRegionTables.encode(tables)
        #expect(bytes.starts(with: CompiledRegionTables.magic))
        #expect(RegionTableFormat.detect(path: "x.csv", bytes: bytes) == .compiled)
        let back = try RegionTableReader.read(bytes: bytes, path: "t.bgrt", format: .compiled)
        #expect(back.map(\.name) == ["cloud", "geo", "empty"])
        #expect(back.map(\.source) == ["inline", "inline", "inline"])
        for (a, b) in zip(tables, back) { #expect(Set(a.entries) == Set(b.entries)) }
        #expect(CompiledRegionTables.encode(back) == bytes)
        let one = try RegionTableReader.read(bytes: CompiledRegionTables.encode([tables[0]]), path: "t", format: .compiled, name: "renamed")
        #expect(one.first?.name == "renamed")
    }

    @Test func corruptAndTruncated() {
        let good = CompiledRegionTables.encode(tables)
        func fails(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try CompiledRegionTables.decode(bytes, path: "t.bgrt")
                Issue.record("expected an error", sourceLocation: sourceLocation)
            } catch let e as RegionTableError {
                #expect(e.description.hasPrefix("t.bgrt: at byte "), "\(e)", sourceLocation: sourceLocation)
                #expect(e.description.contains(fragment), "\(e)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(error)", sourceLocation: sourceLocation)
            }
        }
        for cut in [0, 5, 31, 32, 40, good.count - 1] { fails(Array(good[..<cut]), "") }
        var flipped = good
        flipped[good.count - 3] ^= 0x40
        fails(flipped, "checksum")
        var version = good
        version[8] = 9
        fails(version, "format version 9")
        var magic = good
        magic[0] = 0
        fails(magic, "magic")
        fails(good + [0, 0, 0, 0], "payload bytes")
        // A well-formed checksum over nonsense: structural checks still hold.
        var payload = [UInt8](repeating: 0xff, count: 64)
        var forged = CompiledRegionTables.magic
        forged += [1, 0, 0, 0, 1, 0, 0, 0]
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { forged += $0 }
        withUnsafeBytes(of: CompiledRegionTables.fnv1a64(payload[...]).littleEndian) { forged += $0 }
        forged += payload
        fails(forged, "runs past the end")
        payload = []
        _ = payload
    }
}
