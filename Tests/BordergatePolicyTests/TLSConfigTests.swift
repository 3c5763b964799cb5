import BordergatePolicy
import Foundation
import Testing

@Suite struct TLSConfigTests {
    static let pem: String = {
        let path = NSTemporaryDirectory() + "bg-tls-trust-\(getpid()).pem"
        try? "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    @Test func tlsSettingsAndThePolicyModeAreRead() throws {
        let c = try parse("""
            tls:
              trust: [\(Self.pem)]
              passthrough: ["*.pinned.example"]
              insecure-hosts: [lab.example]
            policies:
              eu-masked:
                inspect: all
                tls: intercept
                mask: {detectors: all}
              plain: {}
            """)
        #expect(c.tls.trust == [Self.pem])
        #expect(c.tls.isPassthrough("api.pinned.example") && !c.tls.isPassthrough("pinned.example.org"))
        #expect(c.tls.isInsecure("lab.example") && !c.tls.isInsecure("other.example"))
        #expect(c.policies["eu-masked"]?.tls == .intercept)
        #expect(c.policies["plain"]?.tls == .passthrough, "passthrough is the default")
        #expect(c.policies["eu-masked"]?.needsContent == true)
    }

    @Test func interceptingAloneSendsConnectionsThroughTheProxy() throws {
        let c = try parse("policies:\n  p:\n    tls: intercept\n")
        #expect(c.policies["p"]?.needsContent == true)
    }

    @Test func errorsNameTheFileLineAndColumn() {
        #expect(parseError("policies:\n  p:\n    tls: inspect\n")
            == "cfg.yaml:3:10: tls is 'inspect'; expected one of intercept, passthrough")
        #expect(parseError("tls:\n  trust: [/nonexistent/ca.pem]\npolicies:\n  p: {}\n")
            == "cfg.yaml:2:10: tls.trust names /nonexistent/ca.pem, which cannot be read; expected a PEM file of CA certificates")
        #expect(parseError("tls:\n  passthrough: ['bad host']\npolicies:\n  p: {}\n")
            == "cfg.yaml:2:16: tls.passthrough: 'bad host' is not a hostname pattern; expected names like api.example.com or *.example.com")
        #expect(parseError("tls:\n  verify: false\npolicies:\n  p: {}\n")
            == "cfg.yaml:2:3: unknown key 'verify' in tls; expected trust, passthrough or insecure-hosts")
        let notPEM = NSTemporaryDirectory() + "bg-tls-not-pem-\(getpid()).txt"
        try? "hello".write(toFile: notPEM, atomically: true, encoding: .utf8)
        #expect(parseError("tls:\n  trust: \(notPEM)\npolicies:\n  p: {}\n")
            == "cfg.yaml:2:10: tls.trust names \(notPEM), which holds no PEM certificate; expected '-----BEGIN CERTIFICATE-----' blocks")
    }
}
