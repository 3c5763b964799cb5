import Testing
@testable import BordergateRegions

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func pairs(_ t: RegionTable) -> [String] { t.entries.map { "\($0.prefix)=\($0.region)" } }

/// Reads and expects one error line naming the path and line.
func expectError(_ text: String, _ format: RegionTableFormat, _ prefix: String, _ fragment: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try RegionTableReader.read(bytes: bytes(text), path: "fixture", format: format)
        Issue.record("expected an error", sourceLocation: sourceLocation)
    } catch let e as RegionTableError {
        let line = e.description
        #expect(line.hasPrefix(prefix), "\(line)", sourceLocation: sourceLocation)
        #expect(line.contains(fragment), "\(line)", sourceLocation: sourceLocation)
        #expect(line.contains("; expected "), "\(line)", sourceLocation: sourceLocation)
        #expect(!line.contains("\n"), sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct CIDRCSVTests {
    @Test func readsBothFamiliesCommentsHeaderAndDuplicates() throws {
        let text = """
        # test table
        prefix,region

        198.51.100.0/25, test-eu
        2001:db8::/33,aws:EU-Central-1\r
        203.0.113.7,de
        198.51.100.0/25,test-eu
        198.51.100.1/24,US
        """
        #expect(RegionTableFormat.detect(path: "t.txt", bytes: bytes(text)) == .cidrCSV)
        #expect(RegionTableFormat.detect(path: "t.txt", bytes: [0xEF, 0xBB, 0xBF] + bytes(text)) == .cidrCSV, "a BOM, as the reader skips it")
        let t = try RegionTableReader.read(bytes: bytes(text), path: "dir/test.csv", format: .cidrCSV).first!
        #expect(t.name == "test")
        #expect(t.source == "dir/test.csv")
        #expect(pairs(t) == ["198.51.100.0/25=test-eu", "2001:db8::/33=aws:eu-central-1", "203.0.113.7/32=DE", "198.51.100.0/24=US"])
        #expect(t.summary.ipv4Count == 3 && t.summary.ipv6Count == 1)
    }

    @Test func errorsNameTheLine() {
        expectError("192.0.2.0/24,DE\n192.0.2.300/24,DE\n", .cidrCSV, "fixture:2: ", "\"192.0.2.300/24\" is not an IP prefix")
        expectError("# c\n192.0.2.0/24\n", .cidrCSV, "fixture:2: ", "1 comma-separated fields")
        expectError("192.0.2.0/24,DE,x\n", .cidrCSV, "fixture:1: ", "3 comma-separated fields")
        expectError("192.0.2.0/33,DE\n", .cidrCSV, "fixture:1: ", "not an IP prefix")
        expectError("192.0.2.0/24,\n", .cidrCSV, "fixture:1: ", "the region is empty")
        expectError("\u{0}\u{1}garbage", .cidrCSV, "fixture:1: ", "")
    }
}

@Suite struct RangeCSVTests {
    @Test func torGeoIPFormats() throws {
        let v4 = """
        # This file has been converted from the IPFire Location database
        16777216,16777471,AU
        16777472,16778239,CN
        15726992,15726999,??
        1.0.16.0,1.0.16.255,jp
        """
        #expect(RegionTableFormat.detect(path: "/usr/share/tor/geoip", bytes: bytes(v4)) == .rangeCSV)
        let t = try RegionTableReader.read(bytes: bytes(v4), path: "/usr/share/tor/geoip", format: .rangeCSV).first!
        #expect(t.name == "geoip")
        #expect(pairs(t) == ["1.0.0.0/24=AU", "1.0.1.0/24=CN", "1.0.2.0/23=CN", "1.0.16.0/24=JP"])
        let v6 = """
        # comment
        2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP
        2001:db8::1,2001:db8::2,DE
        """
        let t6 = try RegionTableReader.read(bytes: bytes(v6), path: "geoip6", format: .rangeCSV).first!
        #expect(pairs(t6) == ["2001:200::/32=JP", "2001:db8::1/128=DE", "2001:db8::2/128=DE"])
    }

    @Test func splittingEdgeCases() {
        func split(_ a: String, _ b: String) -> [String] {
            RangeSplitter.prefixes(from: IPAddress(a)!, to: IPAddress(b)!).map(\.description)
        }
        #expect(split("0.0.0.0", "255.255.255.255") == ["0.0.0.0/0"])
        #expect(split("192.0.2.7", "192.0.2.7") == ["192.0.2.7/32"])
        #expect(split("255.255.255.255", "255.255.255.255") == ["255.255.255.255/32"])
        #expect(split("0.0.0.1", "255.255.255.254").count == 62)
        #expect(split("192.0.2.1", "192.0.2.6") == ["192.0.2.1/32", "192.0.2.2/31", "192.0.2.4/31", "192.0.2.6/32"])
        #expect(split("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ["::/0"])
        #expect(split("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").count == 128)
        #expect(split("8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ["8000::/1"])
        #expect(split("2001:db8::", "2001:db8::") == ["2001:db8::/128"])
        #expect(split("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"])
        // Every split covers exactly the range, with aligned blocks.
        let ps = RangeSplitter.prefixes(from: IPAddress("10.0.0.3")!, to: IPAddress("10.7.255.250")!)
        var next = IPAddress("10.0.0.3")!.ipv4!
        for p in ps {
            #expect(p.address.ipv4! == next)
            next = p.address.ipv4! &+ (p.length == 0 ? 0 : UInt32(1) << (32 - p.length))
        }
        #expect(next == IPAddress("10.7.255.251")!.ipv4!)
    }

    @Test func errors() {
        expectError("16777216,16777471\n", .rangeCSV, "fixture:1: ", "2 comma-separated fields")
        expectError("# c\n16777471,16777216,AU\n", .rangeCSV, "fixture:2: ", "ends (1.0.0.0) before it starts (1.0.0.255)")
        expectError("1.2.3.4,2001:db8::,AU\n", .rangeCSV, "fixture:1: ", "mixes IPv4 and IPv6")
        expectError("99999999999,1,AU\n", .rangeCSV, "fixture:1: ", "the start \"99999999999\" is not an address")
        expectError("1,2,\n", .rangeCSV, "fixture:1: ", "the country is empty")
    }
}

@Suite struct CloudJSONTests {
    static let aws = """
    {
      "syncToken": "1700000000",
      "createDate": "2026-11-01-00-00-00",
      "prefixes": [
        {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "ap-northeast-2"},
        {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "S3", "network_border_group": "ap-northeast-2"},
        {"ip_prefix": "52.94.76.0/22", "region": "GLOBAL", "service": "AMAZON", "network_border_group": "GLOBAL"},
        {"ip_prefix": "18.192.0.0/15", "region": "eu-central-1", "service": "EC2", "network_border_group": "eu-central-1"}
      ],
      "ipv6_prefixes": [
        {"ipv6_prefix": "2a05:d014::/36", "region": "eu-central-1", "service": "EC2", "network_border_group": "eu-central-1"}
      ]
    }
    """
    static let gcp = """
    {"syncToken": "1", "creationTime": "2026-11-01T00:00:00", "prefixes": [
      {"ipv4Prefix": "34.1.208.0/20", "service": "Google Cloud", "scope": "europe-west3"},
      {"ipv6Prefix": "2600:1900:4010::/44", "service": "Google Cloud", "scope": "europe-west3"},
      {"ipv4Prefix": "34.0.0.0/15", "service": "Google Cloud", "scope": "global"}
    ]}
    """
    static let azure = """
    {"changeNumber": 1, "cloud": "Public", "values": [
      {"name": "AzureCloud.germanywestcentral", "id": "AzureCloud.germanywestcentral",
       "properties": {"changeNumber": 1, "region": "germanywestcentral", "regionId": 68, "platform": "Azure",
                      "systemService": "", "addressPrefixes": ["20.38.64.0/19", "2603:1020:c00::/47"], "networkFeatures": null}},
      {"name": "AzureFrontDoor.Frontend", "id": "AzureFrontDoor.Frontend",
       "properties": {"changeNumber": 1, "region": "", "platform": "Azure", "addressPrefixes": ["13.107.246.0/24"]}}
    ]}
    """
    static let oracle = """
    {"last_updated_timestamp": "2026-11-01T00:00:00.000000", "regions": [
      {"region": "eu-frankfurt-1", "cidrs": [{"cidr": "130.61.0.0/16", "tags": ["OCI"]}, {"cidr": "2603:c020:4000::/35", "tags": ["OCI"]}]},
      {"region": "us-ashburn-1", "cidrs": [{"cidr": "129.213.0.0/16", "tags": ["OCI", "OSN"]}]}
    ]}
    """

    @Test func aws() throws {
        #expect(RegionTableFormat.detect(path: "ip-ranges.json", bytes: bytes(Self.aws)) == .aws)
        #expect(RegionTableFormat.detect(path: "t", bytes: [0xEF, 0xBB, 0xBF] + bytes(Self.aws)) == .aws)
        let t = try RegionTableReader.read(bytes: bytes(Self.aws), path: "ip-ranges.json", format: .aws).first!
        #expect(t.name == "aws")
        #expect(pairs(t) == ["3.5.140.0/22=aws:ap-northeast-2", "18.192.0.0/15=aws:eu-central-1", "2a05:d014::/36=aws:eu-central-1"])
    }

    @Test func gcp() throws {
        #expect(RegionTableFormat.detect(path: "cloud.json", bytes: bytes(Self.gcp)) == .gcp)
        let t = try RegionTableReader.read(bytes: bytes(Self.gcp), path: "cloud.json", format: .gcp).first!
        #expect(pairs(t) == ["34.1.208.0/20=gcp:europe-west3", "2600:1900:4010::/44=gcp:europe-west3"])
    }

    @Test func azure() throws {
        #expect(RegionTableFormat.detect(path: "ServiceTags_Public.json", bytes: bytes(Self.azure)) == .azure)
        let t = try RegionTableReader.read(bytes: bytes(Self.azure), path: "tags.json", format: .azure).first!
        #expect(pairs(t) == ["20.38.64.0/19=azure:germanywestcentral", "2603:1020:c00::/47=azure:germanywestcentral"])
    }

    @Test func oracle() throws {
        #expect(RegionTableFormat.detect(path: "public_ip_ranges.json", bytes: bytes(Self.oracle)) == .oracle)
        let t = try RegionTableReader.read(bytes: bytes(Self.oracle), path: "o.json", format: .oracle).first!
        #expect(pairs(t) == ["130.61.0.0/16=oracle:eu-frankfurt-1", "2603:c020:4000::/35=oracle:eu-frankfurt-1", "129.213.0.0/16=oracle:us-ashburn-1"])
    }

    @Test func corruptJSON() {
        expectError("{\"prefixes\": [\n{\"ip_prefix\": \"3.5.140.0/22\",\n", .aws, "fixture:3: ", "the end of the file")
        expectError("{\"prefixes\": [\n  {\"region\": \"eu-central-1\"}\n]}", .aws, "fixture:2: ", "without \"ip_prefix\"")
        expectError("{\"prefixes\": [\n  {\"ip_prefix\": \"3.5.140/22\", \"region\": \"x\"}]}", .aws, "fixture:2: ", "\"3.5.140/22\" is not an IP prefix")
        expectError("{\"syncToken\": \"1\"}", .aws, "fixture:1: ", "has no \"prefixes\"")
        expectError("[1, 2]", .gcp, "fixture:1: ", "the document is an array")
        expectError("{\"values\": [{\"name\": \"x\"}]}", .azure, "fixture:1: ", "without \"properties\"")
        expectError("{\"values\": [{\"properties\": {\"region\": \"x\", \"addressPrefixes\": [7]}}]}", .azure, "fixture:1: ", "is a number")
        expectError("{\"regions\": [{\"region\": \"x\", \"cidrs\": 5}]}", .oracle, "fixture:1: ", "\"cidrs\" is a number")
        expectError("{\"a\": tru}", .oracle, "fixture:1: ", "")
        expectError("{\"a\": \"\\q\"}", .oracle, "fixture:1: ", "unknown escape")
        expectError(String(repeating: "[", count: 100_000), .gcp, "fixture:1: ", "nested deeper")
        expectError("{} x", .gcp, "fixture:1: ", "text after the end")
    }

    @Test func jsonEscapes() throws {
        let v = try JSONParser.parse(bytes(#"{"s": "a\"b\\c\/\u00e9\ud83d\ude00\n", "n": -1.5e2, "t": true, "f": false, "z": null}"#))
        #expect(v["s"]?.stringValue == "a\"b\\c/é😀\n")
        if case .number(let d)? = v["n"] { #expect(d == -150) } else { Issue.record("no number") }
    }
}

@Suite struct FileAndDetectionTests {
    @Test func readsFromDiskAndSniffs() throws {
        let dir = "/tmp/bordergate-regions-test-\(UInt32.random(in: 0...UInt32.max))"
        #expect(mkdirp(dir))
        let csv = dir + "/eu.csv"
        #expect(write(csv, bytes("192.0.2.0/24,DE\n")))
        let t = try RegionTableReader.read(path: csv)
        #expect(t.first?.name == "eu")
        let renamed = try RegionTableReader.read(path: csv, name: "test")
        #expect(renamed.first?.name == "test")
        do {
            _ = try RegionTableReader.read(path: dir + "/missing.csv")
            Issue.record("expected an error")
        } catch let e as RegionTableError {
            #expect(e.description.hasPrefix(dir + "/missing.csv: cannot open: "))
        }
        let unknown = dir + "/blob"
        #expect(write(unknown, [1, 2, 3]))
        #expect(throws: RegionTableError.self) { try RegionTableReader.read(path: unknown) }
    }

    @Test func detection() {
        #expect(RegionTableFormat.detect(path: "x", bytes: CompiledRegionTables.encode([])) == .compiled)
        #expect(RegionTableFormat.detect(path: "t.csv", bytes: bytes("# only a comment\n")) == .cidrCSV)
        #expect(RegionTableFormat.detect(path: "db.mmdb", bytes: []) == .mmdb)
        #expect(RegionTableFormat.detect(path: "x", bytes: bytes("hello world")) == nil)
        #expect(RegionTableFormat.allCases.map(\.rawValue) == ["cidr-csv", "range-csv", "aws", "gcp", "azure", "oracle", "mmdb", "compiled"])
    }
}
