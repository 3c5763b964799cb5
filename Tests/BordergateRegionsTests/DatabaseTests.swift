import Testing
@testable import BordergateRegions

func table(_ name: String, _ lines: [(String, String)]) -> RegionTable {
    RegionTable(name: name, source: "inline", entries: lines.map { .init(prefix: IPPrefix($0.0)!, region: $0.1) })
}

/// Longest-prefix match over the kernel image, the way an LPM trie answers.
func imageLookup(_ image: KernelRegionImage, _ ip: IPAddress) -> String? {
    var best: (Int, UInt32)? = nil
    if let v = ip.ipv4 {
        for e in image.ipv4 {
            let mask: UInt32 = e.length == 0 ? 0 : ~0 << (32 - UInt32(e.length))
            if v & mask == e.address, best == nil || Int(e.length) > best!.0 { best = (Int(e.length), e.regionClass) }
        }
    } else {
        for e in image.ipv6 {
            let p = IPPrefix(address: IPAddress(bytes: e.address), length: Int(e.length))!
            if p.contains(ip), best == nil || Int(e.length) > best!.0 { best = (Int(e.length), e.regionClass) }
        }
    }
    guard let (_, cls) = best, cls != 0 else { return nil }
    return image.classes[Int(cls)]
}

@Suite struct DatabaseTests {
    @Test func longestPrefixAcrossTablesAndTies() {
        let first = table("cloud", [("198.51.100.0/24", "aws:eu-central-1"), ("2001:db8::/48", "gcp:europe-west3"), ("203.0.113.0/24", "aws:us-east-1")])
        let second = table("geo", [("198.51.100.0/25", "FR"), ("198.51.0.0/16", "DE"), ("2001:db8::/32", "NO"), ("203.0.113.0/24", "DE"),
                                   ("0.0.0.0/0", "US")])
        let db = RegionDatabase(tables: [first, second])
        #expect(db.tables.map(\.name) == ["cloud", "geo"])
        #expect(db.tables[1].ipv4Count == 4 && db.tables[1].ipv6Count == 1)

        let a = db.lookup(IPAddress("198.51.100.7")!)!
        #expect(a.region == "FR" && a.table == "geo" && a.prefix.description == "198.51.100.0/25")
        #expect(a.country == "FR" && a.jurisdictions == ["FR", "EU", "EEA"])
        let b = db.lookup(IPAddress("198.51.100.200")!)!
        #expect(b.region == "aws:eu-central-1" && b.table == "cloud" && b.prefix.description == "198.51.100.0/24")
        #expect(b.country == "DE" && b.jurisdictions == ["DE", "EU", "EEA"])
        // Equal prefixes: the earlier table wins.
        let c = db.lookup(IPAddress("203.0.113.9")!)!
        #expect(c.region == "aws:us-east-1" && c.table == "cloud")
        #expect(db.lookup(IPAddress("198.51.7.1")!)?.region == "DE")
        #expect(db.lookup(IPAddress("9.9.9.9")!)?.prefix.description == "0.0.0.0/0")
        #expect(db.lookup(IPAddress("255.255.255.255")!)?.region == "US")
        #expect(db.lookup(IPAddress("2001:db8::1")!)?.region == "gcp:europe-west3")
        #expect(db.lookup(IPAddress("2001:db8:1::1")!)?.region == "NO")
        #expect(db.lookup(IPAddress("2001:db9::1")!) == nil)
        #expect(db.lookup(IPAddress("::ffff:198.51.100.7")!)?.region == "FR")
        let answer = db.lookup(IPAddress("198.51.100.7")!)!
        #expect(answer.address == IPAddress("198.51.100.7")!)

        let swapped = RegionDatabase(tables: [second, first])
        #expect(swapped.lookup(IPAddress("203.0.113.9")!)?.region == "DE")
    }

    @Test func edgesOfTheAddressSpace() {
        let db = RegionDatabase(tables: [table("t", [("255.255.255.255/32", "A"), ("0.0.0.0/32", "B"), ("128.0.0.0/1", "C"),
                                                    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "D"), ("::/128", "E"), ("8000::/1", "F")])])
        #expect(db.lookup(IPAddress("255.255.255.255")!)?.region == "A")
        #expect(db.lookup(IPAddress("255.255.255.254")!)?.region == "C")
        #expect(db.lookup(IPAddress("0.0.0.0")!)?.region == "B")
        #expect(db.lookup(IPAddress("0.0.0.1")!) == nil)
        #expect(db.lookup(IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")!)?.region == "D")
        #expect(db.lookup(IPAddress("::")!)?.region == "E")
        #expect(db.lookup(IPAddress("8000::")!)?.region == "F")
        #expect(db.lookup(IPAddress("7fff::")!) == nil)
        let empty = RegionDatabase(tables: [])
        #expect(empty.lookup(IPAddress("1.2.3.4")!) == nil)
        #expect(empty.kernelImage().ipv4.isEmpty && empty.kernelImage().classes == [""])
    }

    @Test func kernelImageReduces() {
        let db = RegionDatabase(tables: [table("t", [
            ("10.0.0.0/8", "DE"), ("10.1.0.0/16", "DE"),                   // same as its cover: dropped
            ("192.0.2.0/25", "FR"), ("192.0.2.128/25", "FR"),              // siblings: merged into /24
            ("198.51.100.0/25", "FR"), ("198.51.100.128/26", "FR"), ("198.51.100.192/26", "FR"),   // cascade to /24
            ("203.0.113.0/24", "US"), ("203.0.113.0/25", "NL"), ("203.0.113.128/25", "NL"),       // parent fully overridden
            ("2001:db8::/33", "SE"), ("2001:db8:8000::/33", "SE"),
        ])])
        let image = db.kernelImage()
        let text = Set(image.ipv4.map { "\(IPAddress(ipv4: $0.address))/\($0.length)=\(image.classes[Int($0.regionClass)])" })
        #expect(text == ["10.0.0.0/8=DE", "192.0.2.0/24=FR", "198.51.100.0/24=FR", "203.0.113.0/24=NL"])
        #expect(image.ipv6.count == 1 && image.ipv6[0].length == 32 && image.ipv6[0].address == IPAddress("2001:db8::")!.bytes16)
        #expect(image.classes[0] == "")
        // Stable: same tables, same fingerprint; different tables, different fingerprint.
        #expect(db.kernelImage().fingerprint == image.fingerprint)
        let other = RegionDatabase(tables: [table("t", [("10.0.0.0/8", "DE")])]).kernelImage()
        #expect(other.fingerprint != image.fingerprint)
    }

    @Test func kernelImageAnswersLikeLookup() {
        var rng = SplitMix(seed: 42)
        let regions = ["DE", "FR", "aws:eu-central-1"]
        func randomTable(_ name: String, count: Int) -> RegionTable {
            var entries: [RegionTable.Entry] = []
            for _ in 0..<count {
                let region = regions[Int(rng.next() % 3)]
                if rng.next() % 3 == 0 {
                    let length = 32 + Int(rng.next() % 33)
                    let v = (UInt128(0x2001_0db8) << 96) | (UInt128(rng.next() & 0xffff_ffff) << 64)
                    entries.append(.init(prefix: IPPrefix(address: IPAddress(value: v), length: length)!, region: region))
                } else {
                    let length = 16 + Int(rng.next() % 17)
                    let v = 0x0A00_0000 | UInt32(rng.next() & 0xffff)
                    entries.append(.init(prefix: IPPrefix(address: IPAddress(ipv4: v), length: length)!, region: region))
                }
            }
            return RegionTable(name: name, source: "random", entries: entries)
        }
        for round in 0..<4 {
            let tables = [randomTable("a", count: 300), randomTable("b", count: 300)]
            let db = RegionDatabase(tables: tables)
            let image = db.kernelImage()
            #expect(image.ipv4.count + image.ipv6.count < tables[0].entries.count + tables[1].entries.count, "round \(round)")
            for _ in 0..<3000 {
                let ip: IPAddress
                switch rng.next() % 3 {
                case 0: ip = IPAddress(ipv4: 0x0A00_0000 | UInt32(rng.next() & 0x1_ffff))
                case 1: ip = IPAddress(value: (UInt128(0x2001_0db8) << 96) | (UInt128(rng.next() & 0x1_ffff_ffff) << 63) | UInt128(rng.next()))
                default:
                    // Exactly at a prefix boundary, where off-by-one errors live.
                    let e = tables[Int(rng.next() % 2)].entries.randomElement(using: &rng)!
                    ip = rng.next() % 2 == 0 ? e.prefix.address : IPAddress(value: e.prefix.lastValue)
                }
                let expected = db.lookup(ip)
                #expect(imageLookup(image, ip) == expected?.region, "\(ip)")
                // And lookup itself is the plain longest match, earlier table first.
                var best: (Int, Int, String)? = nil
                for (ti, t) in tables.enumerated() {
                    for e in t.entries where e.prefix.contains(ip) {
                        if best == nil || e.prefix.length > best!.0 || (e.prefix.length == best!.0 && ti < best!.1) {
                            best = (e.prefix.length, ti, e.region)
                        }
                    }
                }
                #expect(expected?.region == best?.2, "\(ip)")
                #expect(expected?.prefix.length == best?.0, "\(ip)")
            }
        }
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct PartitionedImageTests {
    /// The kernel only needs the classes policies tell apart: EU or not, say. The coarse image must
    /// answer every address with the kernel class of the region lookup() gives.
    @Test func aCoarseImageAnswersWithTheKernelClassOfLookup() {
        var rng = SplitMix(seed: 7)
        let regions = ["DE", "FR", "US", "aws:eu-central-1", "aws:us-east-1"]
        var entries: [RegionTable.Entry] = []
        for _ in 0..<800 {
            let region = regions[Int(rng.next() % UInt64(regions.count))]
            if rng.next() % 3 == 0 {
                let v = (UInt128(0x2001_0db8) << 96) | (UInt128(rng.next() & 0xffff_ffff) << 64)
                entries.append(.init(prefix: IPPrefix(address: IPAddress(value: v), length: 32 + Int(rng.next() % 33))!, region: region))
            } else {
                let v = 0x0A00_0000 | UInt32(rng.next() & 0xffff)
                entries.append(.init(prefix: IPPrefix(address: IPAddress(ipv4: v), length: 16 + Int(rng.next() % 17))!, region: region))
            }
        }
        let db = RegionDatabase(tables: [RegionTable(name: "t", source: "random", entries: entries)])
        // EU regions are kernel class 1; everything else is class 0, like "no table knows it".
        let eu: Set = ["DE", "FR", "aws:eu-central-1"]
        let map = db.regionClasses.map { eu.contains($0) ? UInt32(1) : 0 }
        let image = db.kernelImage(classMap: map, classNames: ["", "EU"])
        #expect(image.ipv4.count + image.ipv6.count < db.kernelImage().ipv4.count + db.kernelImage().ipv6.count)
        for _ in 0..<4000 {
            let ip: IPAddress
            switch rng.next() % 3 {
            case 0: ip = IPAddress(ipv4: 0x0A00_0000 | UInt32(rng.next() & 0x1_ffff))
            case 1: ip = IPAddress(value: (UInt128(0x2001_0db8) << 96) | (UInt128(rng.next() & 0x1_ffff_ffff) << 63) | UInt128(rng.next()))
            default:
                let e = entries.randomElement(using: &rng)!
                ip = rng.next() % 2 == 0 ? e.prefix.address : IPAddress(value: e.prefix.lastValue)
            }
            let expected = db.lookup(ip).map { eu.contains($0.region) ? "EU" : nil } ?? nil
            #expect(imageLookup(image, ip) == expected, "\(ip)")
        }
        // A different partition is a different image.
        let all = db.kernelImage(classMap: db.regionClasses.map { $0.isEmpty ? 0 : 1 }, classNames: ["", "known"])
        #expect(all.fingerprint != image.fingerprint)
    }
}
