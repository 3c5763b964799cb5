import Testing
import BordergatePolicy

@Suite("Hostname globs")
struct HostnameGlobTests {
    @Test("matches", arguments: [
        // Exact names, any case, trailing dots ignored.
        ("example.com", "example.com", true),
        ("example.com", "EXAMPLE.com", true),
        ("Example.COM", "example.com", true),
        ("example.com.", "example.com", true),
        ("example.com", "example.com.", true),
        ("example.com", "www.example.com", false),
        ("example.com", "example.co", false),
        ("example.com", "xexample.com", false),
        ("example.com", "example.com.evil", false),
        // A leading whole-label star: one or more labels.
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        ("*.example.com", "A.Example.Com.", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", ".example.com", false),
        ("*.example.com", "aexample.com", false),
        ("*.example.com", "a.example.org", false),
        ("*.example.com", "a.example.com.evil", false),
        ("*", "com", true),
        ("*", "a.b.c", true),
        ("*", "", false),
        // A star inside a label stays inside it.
        ("api-*.example.com", "api-v2.example.com", true),
        ("api-*.example.com", "api-.example.com", true),
        ("api-*.example.com", "API-EU.example.com", true),
        ("api-*.example.com", "api-v2.eu.example.com", false),
        ("api-*.example.com", "api.example.com", false),
        ("api-*.example.com", "web-v2.example.com", false),
        ("*-cdn.example.com", "eu-cdn.example.com", true),
        ("*-cdn.example.com", "eu.x-cdn.example.com", false),
        ("a*b*c.example", "abc.example", true),
        ("a*b*c.example", "axxbyyc.example", true),
        ("a*b*c.example", "axxbyyd.example", false),
        ("a*b*c.example", "acb.example", false),
        ("a**.example", "abc.example", true),
        // A whole-label star not on the left is one label.
        ("www.*.example", "www.eu.example", true),
        ("www.*.example", "www.eu.west.example", false),
        ("www.*.example", "www.example", false),
        ("*.*.example", "a.b.example", true),
        ("*.*.example", "a.b.c.example", true),
        ("*.*.example", "b.example", false),
        // Underscores and digits.
        ("_dmarc.example.com", "_DMARC.example.com", true),
        ("10.0.0.*", "10.0.0.7", true),
        ("10.0.0.*", "10.0.1.7", false),
        // Hosts that are not names never match.
        ("*.example.com", "a..example.com", false),
        ("example.com", "", false),
        ("example.com", ".", false),
    ])
    func matches(pattern: String, host: String, expected: Bool) throws {
        let glob = try #require(HostnameGlob(pattern))
        #expect(glob.matches(host) == expected, "\(pattern) ~ \(host)")
    }

    @Test("rejected patterns", arguments: [
        "", ".", "..", " ", "example .com", " example.com", "example.com ", "exa\tmple.com",
        "a..b", ".example.com", "example.com..", "http://example.com", "example.com:443",
        "ex@mple.com", "bücher.example", "example.com/", "[::1]", "?.example", "exa%mple.com",
    ])
    func rejected(pattern: String) {
        #expect(HostnameGlob(pattern) == nil, "\(pattern.debugDescription)")
    }

    @Test func normalisedPatternAndHashing() throws {
        let upper = try #require(HostnameGlob("*.Example.COM."))
        let lower = try #require(HostnameGlob("*.example.com"))
        #expect(upper.pattern == "*.example.com")
        #expect(upper.description == "*.example.com")
        #expect(upper == lower)
        #expect(Set([upper, lower]).count == 1)
        #expect(HostnameGlob("a.example") != HostnameGlob("b.example"))
    }
}
