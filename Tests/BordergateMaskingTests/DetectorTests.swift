import Testing
import BordergateMasking

@Suite struct DetectorTests {
    /// Each value is found whole, by its detector, in a sentence around it.
    func expectFound(_ values: [String], _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for v in values {
            for text in ["\(v)", "see \(v).", "{\"x\": \"\(v)\"}", "a \(v)\nb"] {
                #expect(detector(of: v, in: text) == name, "\(name): \(v) in \(text): \(found(text))", sourceLocation: sourceLocation)
            }
        }
    }

    /// Nothing is found in each decoy.
    func expectNothing(_ decoys: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        for d in decoys {
            for text in ["\(d)", "see \(d).", "{\"x\": \"\(d)\"}"] {
                #expect(found(text).isEmpty, "\(d): \(found(text))", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func email() {
        expectFound(["alice@example.com", "Bob.Smith+ci@mail.example.co.uk", "x_y-z@sub.domain.de", "JOHN@EXAMPLE.ORG",
                     "a@b.xn--p1ai", "user%tag@example.museum"], "email")
        expectNothing(["bob@localhost", "ci@runner.internal", "root@build.local", "x@y.notatld", "@mention", "a@b",
                       "user@-bad.com", "name@@example.com", ".a@example.com"])
    }

    @Test func creditCard() {
        expectFound(["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444",
                     "378282246310005", "3782 822463 10005", "6011111111111117", "4222222222222", "2223003122003222",
                     "6011 0009 9013 9424 009"], "credit-card")
        expectNothing(["4111111111111112", "4111 1111 1111 1112", "1234567812345678", "0000000000000000",
                       "4111 1111-1111 1111", "41111111111111111111", "order-4111111111111111", "4111111111111111a"])
    }

    @Test func iban() {
        expectFound(["DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
                     "FR1420041010050500013M02606", "NL91ABNA0417164300", "NO9386011117947"], "iban")
        expectNothing(["DE89370400440532013001", "DE8937040044053201300", "XX89370400440532013000", "GB82 WEST 1234 5698 7654 33"])
    }

    @Test func usSSN() {
        expectFound(["123-45-6789", "500-04-6387", "899-99-9999"], "us-ssn")
        expectNothing(["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "123-45-67890", "1234-5-6789"])
    }

    @Test func phone() {
        expectFound(["+1-202-555-0143", "+1 (202) 555-0143", "(202) 555-0143", "(591)341-7776", "202-555-0143", "202.555.0143",
                     "+44 20 7946 0958", "+49 30 901820", "+33 1 23 45 67 89", "030 9018 0162", "+4915112345678",
                     "+1-912-841-5868x3449", "+49(0)30 901820", "03 87 78 24 20"], "phone")
        expectNothing(["2024-01-15", "15.01.2024", "01/15/2024", "1.2.3", "v10.14.2", "1700000000", "1 234 567",
                       "1.234.567", "1999-2024", "ORD-2024-118934", "12:30:45", "123", "12345"])
    }

    @Test func ipAddress() {
        expectFound(["198.51.100.7", "10.0.0.1", "255.255.255.255", "2001:db8::1", "2001:db8:85a3::8a2e:370:7334",
                     "fe80::1", "::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:198.51.100.7"], "ip-address")
        expectNothing(["256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", "std::vector", "12:30:45", "00:1a:2b:3c:4d:5e", "::",
                       "a::b::c"])
    }

    @Test func awsAccessKey() {
        expectFound(["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"], "aws-access-key")
        expectNothing(["AKIAEXAMPLE", "AKIAIOSFODNN7EXAMPLE1", "xAKIAIOSFODNN7EXAMPLE", "AKIAiosfodnn7example"])
    }

    @Test func jwt() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
        expectFound([jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."], "jwt")
        expectNothing(["eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.abc", "abc.def.ghi", "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ",
                       "eyJnotbase64!.a.b"])
    }

    @Test func privateKey() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----"
        expectFound([key, key.replacingOccurrences("RSA ", ""), key.replacingOccurrences("RSA", "OPENSSH")], "private-key")
        expectNothing(["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
                       "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END EC PRIVATE KEY-----"])
    }

    @Test func secretToken() {
        expectFound(["ghp_" + String(repeating: "a1B2", count: 9), "github_pat_11ABCDEFG0123456789abc_" + String(repeating: "x", count: 59),
                     "xoxb-123456789012-123456789012-abcdefABCDEF", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                     "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"], "secret-token")
        expectNothing(["ghp_short", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "xoxz-123456789012", "AIzaShort", "password reset",
                       "passwords=3", "Authorization required"])
        #expect(found("GET /?user=x&password=hunter2&y=1").map(\.1) == ["hunter2"])
        #expect(found("db_password = 's3cr3t pass'").map(\.1) == ["s3cr3t pass"])
        #expect(found("Authorization: Bearer abc.def-123\r\nHost: x").map(\.1) == ["Bearer abc.def-123"])
        #expect(found("{\"Authorization\": \"Basic dXNlcjpwYXNz\"}").map(\.1) == ["Basic dXNlcjpwYXNz"])
        #expect(found("Proxy-Authorization: Basic dXNlcjpwYXNz").map(\.0) == ["secret-token"])
    }

    @Test func decoysOfEveryKind() {
        expectNothing(["550e8400-e29b-41d4-a716-446655440000", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                       "da39a3ee5e6b4b0d3255bfef95601890afd80709", "2024-03-15T10:22:01Z", "release 10.4.22", "INV-2021-000123",
                       "#A2019-123456", "$1,299.00", "port 8080", "build 20240315"])
    }

    @Test func onlyEnabledDetectorsRun() {
        let e = MaskingEngine(MaskingConfiguration(detectors: [.email]))
        #expect(found("a@example.com 4111111111111111 198.51.100.7", e).map(\.0) == ["email"])
    }

    @Test func customDetector() throws {
        let e = MaskingEngine(MaskingConfiguration(customDetectors: [try CustomDetector(name: "employee-id", pattern: "EMP-[0-9]{6}")]))
        #expect(found("staff EMP-123456 and a@example.com", e).map(\.0) == ["employee-id", "email"])
        #expect(e.mask("id EMP-123456.").text == "id [EMPLOYEE-ID].")
        #expect(throws: (any Error).self) { try CustomDetector(name: "bad", pattern: "([a-z") }
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = "", rest = self[...]
        while let r = rest.firstRange(of: a) { out += rest[..<r.lowerBound] + b; rest = rest[r.upperBound...] }
        return out + rest
    }
}
