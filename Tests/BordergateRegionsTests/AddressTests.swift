import Testing
@testable import BordergateRegions

@Suite struct AddressTests {
    @Test func parsingAndFormatting() {
        #expect(IPAddress("198.51.100.7")?.description == "198.51.100.7")
        #expect(IPAddress("198.51.100.7")?.ipv4 == 0xC633_6407)
        #expect(IPAddress("::ffff:198.51.100.7") == IPAddress("198.51.100.7"))
        #expect(IPAddress("::ffff:c633:6407")?.isIPv4 == true)
        #expect(IPAddress("2001:db8::1")?.description == "2001:db8::1")
        #expect(IPAddress("2001:0DB8:0000:0000:0000:0000:0000:0001")?.description == "2001:db8::1")
        #expect(IPAddress("::")?.description == "::")
        #expect(IPAddress("::1")?.description == "::1")
        #expect(IPAddress("1::")?.description == "1::")
        #expect(IPAddress("2001:db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1")    // first of equal runs
        #expect(IPAddress("2001:db8:0:1:1:1:1:1")?.description == "2001:db8:0:1:1:1:1:1") // a single 0 stays
        #expect(IPAddress("::192.0.2.1")?.description == "::c000:201")
        #expect(IPAddress("64:ff9b::192.0.2.1")?.description == "64:ff9b::c000:201")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "1.2.3.4 ", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9",
                    "1:2:3:4:5:6:7:8::", ":1", "1:", "g::", "::1.2.3", "fe80::1%eth0", "1:2:3:4:5:6:7:1.2.3.4"] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
        #expect(IPAddress("1:2:3:4:5:6:1.2.3.4")?.description == "1:2:3:4:5:6:102:304")
    }

    @Test func bytesAndOrdering() {
        let v4 = IPAddress(bytes: [192, 0, 2, 1])
        #expect(v4.description == "192.0.2.1")
        #expect(v4.bytes16 == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1])
        #expect(IPAddress(bytes: v4.bytes16) == v4)
        let v6 = IPAddress("2001:db8::1")!
        #expect(IPAddress(bytes: v6.bytes16) == v6)
        #expect(!v6.isIPv4 && v6.ipv4 == nil)
        #expect(IPAddress("10.0.0.1")! < IPAddress("10.0.0.2")!)
        #expect(IPAddress(ipv4: 1) < IPAddress("2001:db8::")!)
    }

    @Test func prefixes() {
        #expect(IPPrefix("198.51.100.0/25")?.description == "198.51.100.0/25")
        #expect(IPPrefix("198.51.100.77/25")?.description == "198.51.100.0/25")
        #expect(IPPrefix("2001:db8:ffff::/33")?.description == "2001:db8:8000::/33")
        #expect(IPPrefix("2001:db8::1")?.length == 128)
        #expect(IPPrefix("192.0.2.1")?.length == 32)
        #expect(IPPrefix("0.0.0.0/0")?.contains(IPAddress("255.1.2.3")!) == true)
        #expect(IPPrefix("0.0.0.0/0")?.contains(IPAddress("2001:db8::")!) == false)
        #expect(IPPrefix("::/0")?.contains(IPAddress("1.2.3.4")!) == false)
        #expect(IPPrefix("::ffff:10.0.0.0/104")?.description == "10.0.0.0/8")
        #expect(IPPrefix("::ffff:0:0/96")?.description == "0.0.0.0/0")
        #expect(IPPrefix("198.51.100.0/25")!.contains(IPAddress("198.51.100.127")!))
        #expect(!IPPrefix("198.51.100.0/25")!.contains(IPAddress("198.51.100.128")!))
        #expect(IPPrefix("2001:db8::/32")!.contains(IPAddress("2001:db8:ffff::1")!))
        for bad in ["1.2.3.4/33", "2001:db8::/129", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/1a", "/8", "x/8", "1.2.3.4/0008"] {
            #expect(IPPrefix(bad) == nil, "\(bad)")
        }
        #expect(IPPrefix(address: IPAddress("10.1.2.3")!, length: 8)?.description == "10.0.0.0/8")
        #expect(IPPrefix(address: IPAddress("10.1.2.3")!, length: 40) == nil)
    }
}

@Suite struct CatalogTests {
    let c = RegionCatalog.builtIn

    @Test func countries() {
        #expect(c.country(ofRegion: "DE") == "DE")
        #expect(c.country(ofRegion: "aws:eu-central-1") == "DE")
        #expect(c.country(ofRegion: "gcp:europe-west3") == "DE")
        #expect(c.country(ofRegion: "azure:germanywestcentral") == "DE")
        #expect(c.country(ofRegion: "oracle:eu-frankfurt-1") == "DE")
        #expect(c.country(ofRegion: "aws:us-east-1") == "US")
        #expect(c.country(ofRegion: "aws:nowhere-1") == nil)
        #expect(c.country(ofRegion: "ZZ") == nil)
        #expect(c.country(ofRegion: "") == nil)
        #expect(c.isKnownCountry("de") && c.isKnownCountry("XK") && !c.isKnownCountry("EU") && !c.isKnownCountry("UK"))
    }

    @Test func jurisdictions() {
        #expect(c.jurisdictions(ofCountry: "DE") == ["DE", "EU", "EEA"])
        #expect(c.jurisdictions(ofCountry: "NO") == ["NO", "EEA", "EFTA"])
        #expect(c.jurisdictions(ofCountry: "CH") == ["CH", "EFTA"])
        #expect(c.jurisdictions(ofCountry: "US") == ["US", "FIVE-EYES"])
        #expect(c.jurisdictions(ofCountry: "JP") == ["JP"])
        #expect(c.groups["EU"]?.count == 27)
        #expect(c.groups["EEA"]?.count == 30)
        #expect(Set(c.groups["EEA"]!) == Set(c.groups["EU"]! + ["IS", "LI", "NO"]))
        #expect(c.groupNames.prefix(3) == ["EU", "EEA", "EFTA"])
    }

    @Test func builtInDataIsConsistent() {
        for (region, country) in c.regions {
            #expect(c.isKnownCountry(country), "\(region) -> \(country)")
            #expect(region == region.lowercased() && region.contains(":"), "\(region)")
        }
        for (group, members) in c.groups { for m in members { #expect(c.isKnownCountry(m), "\(group): \(m)") } }
        #expect(c.regions.count > 150)
    }

    @Test func policyDefinitions() {
        var c = RegionCatalog.builtIn
        c.define(region: "test-eu", country: "de")
        c.define(group: "DACH", countries: ["DE", "AT", "CH"])
        #expect(c.country(ofRegion: "test-eu") == "DE")
        #expect(c.jurisdictions(ofCountry: "DE") == ["DE", "EU", "EEA", "DACH"])
        #expect(c.jurisdictions(ofCountry: "ch") == ["CH", "EFTA", "DACH"])
        c.define(group: "EU", countries: ["FR"])   // redefinition keeps its place
        #expect(c.jurisdictions(ofCountry: "DE") == ["DE", "EEA", "DACH"])
        #expect(RegionCatalog.builtIn.jurisdictions(ofCountry: "DE") == ["DE", "EU", "EEA"])
    }
}
