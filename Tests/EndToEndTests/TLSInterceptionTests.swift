import BordergateAudit
import Foundation
import Testing

/// The test host's HTTPS (scripts/testnet.sh): 443 with a certificate from its test CA, 8443
/// self-signed.
let testHostCA = "/run/bordergate-testnet/\(Harness.netName)-tls/ca.pem"
let secureHost = "secure.test.example"

let tlsConfig = """
    tls:
      trust: [\(testHostCA)]
      passthrough: ["pinned.test.example"]
      insecure-hosts: ["untrusted.test.example"]
    policies:
      default:
        inspect: all
        unknown: allow
      tls:
        inspect: all
        unknown: allow
        tls: intercept
        mask:
          detectors: all
          fields: [password]
        record: true
      tls-by-name:
        inspect: all
        unknown: deny
        tls: intercept
        allow:
          - hosts: [\(secureHost), pinned.test.example, untrusted.test.example]
    """

extension EndToEnd {
    static let tls = startShared("tls", port: 17_450, config: tlsConfig)

    /// `bordergate exec` under the intercepting policy, as nobody, with no CA option anywhere.
    func execTLS(_ d: DaemonFixture, _ command: String) -> Harness.ShellResult {
        d.cli("exec --policy tls --user nobody -- sh -c \(Harness.shellQuote(command))")
    }

    func resolve(_ name: String, port: Int = 443) -> String { "--resolve \(name):\(port):\(Harness.host4)" }

    @Test func curlPythonGitAndOpenSSLTrustTheInterceptionWithoutAnyOption() throws {
        let d = try Self.tls.get()
        let bundleBefore = Harness.sh("sha256sum /etc/ssl/certs/ca-certificates.crt").stdout
        let c = execTLS(d, "curl -sS --max-time 20 \(resolve(secureHost)) https://\(secureHost)/pii.json")
        #expect(c.status == 0, "curl: \(c.stderr)")
        expectNoPII(c.stdout, "what curl got through TLS")
        #expect(c.stdout.contains("\"email\": \"[EMAIL]\""), "curl: \(c.stdout)")

        let p = execTLS(d, "python3 -c \"import urllib.request; print(urllib.request.urlopen('https://\(Harness.host4)/pii.json', timeout=20).read().decode())\"")
        #expect(p.status == 0, "python: \(p.stderr)")
        expectNoPII(p.stdout, "what python got through TLS")
        #expect(p.stdout.contains("[CREDIT-CARD]"), "python: \(p.stdout)")

        let g = execTLS(d, "HOME=/tmp git ls-remote https://\(Harness.host4)/git/repo.git")
        #expect(g.status == 0, "git: \(g.stderr)")
        #expect(g.stdout.contains("refs/heads/main"), "git: \(g.stdout)")

        let o = execTLS(d, "echo | openssl s_client -connect \(Harness.host4):443 -servername \(secureHost) -verify_return_error 2>&1")
        #expect(o.stdout.contains("Verify return code: 0 (ok)"), "openssl: \(o.stdout.suffix(600))")
        #expect(o.stdout.contains("Bordergate local CA"), "the leaf is the local CA's: \(o.stdout.prefix(800))")
        #expect(o.stdout.contains("CN = \(secureHost)") || o.stdout.contains("CN=\(secureHost)"))

        // the bundle view: naming the system bundle explicitly trusts the CA too
        let b = execTLS(d, "curl -sS --max-time 20 --cacert /etc/ssl/certs/ca-certificates.crt \(resolve(secureHost)) https://\(secureHost)/")
        #expect(b.status == 0, "curl --cacert system bundle: \(b.stderr)")
        #expect(b.stdout.contains("hello from the test host"))

        // nothing outside the child changed
        #expect(Harness.sh("sha256sum /etc/ssl/certs/ca-certificates.crt").stdout == bundleBefore)
        let ca = try String(contentsOfFile: d.stateDir + "/tls/ca.pem", encoding: .utf8)
        let system = try String(contentsOfFile: "/etc/ssl/certs/ca-certificates.crt", encoding: .utf8)
        #expect(!system.contains(ca.split(separator: "\n")[1]), "the host's bundle does not hold the local CA")

        // the interception was recorded, masked
        let events = d.waitForEvents { all in all.contains { $0.type == .mask && $0.destination?.port == 443 } }
        #expect(events.contains { $0.type == .mask && $0.destination?.port == 443 && $0.message == "GET /pii.json → 200" })
        #expect(events.contains { $0.type == .session && $0.destination?.port == 443 })
        let grep = Harness.sh("grep -rlaF 'ada.lovelace@example.org' \(Harness.shellQuote(d.stateDir)) || true")
        #expect(grep.stdout.isEmpty, "the state directory holds a served value: \(grep.stdout)")
    }

    @Test func theCAIsMadeOnceWithItsKeyPrivateAndExportPrintsIt() throws {
        let d = try Self.tls.get()
        var st = stat()
        #expect(stat(d.stateDir + "/tls/ca.key", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600, "ca.key mode \(String(st.st_mode & 0o777, radix: 8))")
        let exported = d.cli("ca export")
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout == (try String(contentsOfFile: d.stateDir + "/tls/ca.pem", encoding: .utf8)))
        let text = Harness.sh("printf '%s' \(Harness.shellQuote(exported.stdout)) | openssl x509 -noout -subject -enddate -ext basicConstraints")
        #expect(text.stdout.contains("Bordergate local CA ("), "\(text.stdout)\(text.stderr)")
        #expect(text.stdout.contains("CA:TRUE"))
    }

    @Test func anUntrustedUpstreamFailsTheHandshakeWithTheReasonNamed() throws {
        let d = try Self.tls.get()
        let r = execTLS(d, "curl -sS --max-time 20 https://\(Harness.host4):8443/")
        #expect(r.status != 0, "curl reached a self-signed upstream: \(r.stdout)")
        #expect(r.stderr.contains("alert handshake failure"), "\(r.stderr)")
        let events = d.waitForEvents { all in all.contains { $0.type == .tls && $0.destination?.port == 8443 } }
        let e = try #require(events.last { $0.type == .tls && $0.destination?.port == 8443 })
        #expect(e.verdict == .deny)
        #expect(e.reason == "upstream certificate for \(Harness.host4) is not trusted: self-signed (CN=untrusted.test.example)")
    }

    @Test func anInsecureHostIsNotVerifiedAndItsEventSaysSo() throws {
        let d = try Self.tls.get()
        let r = execTLS(d, "curl -sS --max-time 20 \(resolve("untrusted.test.example", port: 8443)) https://untrusted.test.example:8443/")
        #expect(r.status == 0, "curl: \(r.stderr)")
        #expect(r.stdout.contains("hello from the test host"))
        let events = d.waitForEvents { all in all.contains { $0.type == .tls && $0.reason?.contains("not verified") == true } }
        #expect(events.contains { $0.type == .tls && $0.verdict == .audit
            && $0.reason == "certificate of untrusted.test.example not verified (tls.insecure-hosts)" })
    }

    @Test func aPinnedClientFailsAndTheEventPointsAtThePassthroughList() throws {
        let d = try Self.tls.get()
        // pinned to the test host's real CA: Bordergate's leaf is refused
        let r = execTLS(d, "curl -sS --max-time 20 --cacert \(testHostCA) \(resolve(secureHost)) https://\(secureHost)/")
        #expect(r.status != 0, "a pinned client accepted the minted leaf: \(r.stdout)")
        let events = d.waitForEvents { all in all.contains { $0.type == .tls && $0.reason?.contains("tls.passthrough") == true } }
        let e = try #require(events.last { $0.type == .tls && $0.reason?.contains("tls.passthrough") == true })
        #expect(e.reason?.contains("add \(secureHost) to tls.passthrough") == true, "\(e.reason ?? "")")
    }

    @Test func aPassthroughHostShowsItsRealCertificate() throws {
        let d = try Self.tls.get()
        let r = execTLS(d, "curl -sS --max-time 20 --cacert \(testHostCA) \(resolve("pinned.test.example")) https://pinned.test.example/")
        #expect(r.status == 0, "curl pinned to the real CA: \(r.stderr)")
        #expect(r.stdout.contains("hello from the test host"))
        let o = execTLS(d, "echo | openssl s_client -connect \(Harness.host4):443 -servername pinned.test.example 2>&1")
        #expect(o.stdout.contains("Bordergate test CA"), "\(o.stdout.prefix(600))")
        #expect(!o.stdout.contains("Bordergate local CA"))
    }

    @Test func aHostInsideTLSOtherThanTheSNIGetsA421() throws {
        let d = try Self.tls.get()
        let r = execTLS(d, "curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -H 'Host: other.test.example' \(resolve(secureHost)) https://\(secureHost)/")
        #expect(r.stdout == "421", "status \(r.stdout): \(r.stderr)")
        let events = d.waitForEvents { all in all.contains { $0.reason?.contains("domain fronting") == true } }
        #expect(events.contains { $0.reason == "request for other.test.example inside TLS for \(secureHost) (domain fronting) is refused" })
    }

    @Test func rotatingTheCAChangesTheLeavesTheNextConnectionSees() throws {
        let d = try Self.tls.get()
        func issuerFingerprint() -> String {
            let o = execTLS(d, "echo | openssl s_client -connect \(Harness.host4):443 -servername \(secureHost) -showcerts 2>/dev/null")
            // the second certificate of the chain is the CA
            let blocks = o.stdout.components(separatedBy: "-----BEGIN CERTIFICATE-----").dropFirst()
            guard blocks.count >= 2, let pem = blocks.dropFirst().first?.components(separatedBy: "-----END CERTIFICATE-----").first else { return "" }
            let cert = "-----BEGIN CERTIFICATE-----" + pem + "-----END CERTIFICATE-----\n"
            return Harness.sh("printf '%s' \(Harness.shellQuote(cert)) | openssl x509 -noout -fingerprint -sha256").stdout
        }
        let before = issuerFingerprint()
        #expect(!before.isEmpty)
        let r = d.cli("ca rotate")
        #expect(r.status == 0, "\(r.stderr)")
        let after = issuerFingerprint()
        #expect(!after.isEmpty && after != before, "before \(before), after \(after)")
        let current = Harness.sh("openssl x509 -noout -fingerprint -sha256 -in \(d.stateDir)/tls/ca.pem").stdout
        #expect(after == current)
        // and tools under exec trust the new one
        let c = execTLS(d, "curl -sS --max-time 20 \(resolve(secureHost)) https://\(secureHost)/")
        #expect(c.status == 0, "curl after rotation: \(c.stderr)")
    }

    @Test func caInstallLetsToolsOutsideExecTrustTheInterceptionAndUninstallRestoresTheBundle() throws {
        let d = try Self.tls.get()
        let bundle = "/etc/ssl/certs/ca-certificates.crt"
        let before = Harness.sh("sha256sum \(bundle)").stdout
        let installed = d.cli("ca install")
        defer { _ = d.cli("ca uninstall") }
        #expect(installed.status == 0, "\(installed.stderr)")
        let ca = try String(contentsOfFile: d.stateDir + "/tls/ca.pem", encoding: .utf8)
        let line = String(ca.split(separator: "\n")[1])
        #expect((try String(contentsOfFile: bundle, encoding: .utf8)).contains(line), "the system bundle holds the CA")
        // a tool started by a runner in a guarded cgroup (not under exec), with no option
        try withGuardedCgroup("tls-installed", on: Self.tls, policy: "tls") { _, cg in
            let r = curl(cg, "\(resolve(secureHost)) https://\(secureHost)/pii.json")
            #expect(r.status == 0, "curl: \(r.stderr)")
            #expect(r.stdout.contains("[EMAIL]"))
        }
        let removed = d.cli("ca uninstall")
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(!(try String(contentsOfFile: bundle, encoding: .utf8)).contains(line))
        #expect(Harness.sh("sha256sum \(bundle)").stdout == before, "the bundle is as it was")
    }

    @Test func tls12AndAClientThatOffersHTTP2NegotiateDownToWhatIsInspected() throws {
        let d = try Self.tls.get()
        let v12 = execTLS(d, "curl -sS --max-time 20 --tlsv1.2 --tls-max 1.2 -w '%{http_version}' \(resolve(secureHost)) https://\(secureHost)/")
        #expect(v12.status == 0, "TLS 1.2: \(v12.stderr)")
        let h2 = execTLS(d, "curl -sS --max-time 20 --http2 -o /dev/null -w '%{http_version}' \(resolve(secureHost)) https://\(secureHost)/")
        #expect(h2.status == 0, "--http2: \(h2.stderr)")
        #expect(h2.stdout == "1.1", "negotiated HTTP/\(h2.stdout)")
        let o = execTLS(d, "echo | openssl s_client -tls1_3 -alpn h2,http/1.1 -connect \(Harness.host4):443 -servername \(secureHost) 2>&1")
        #expect(o.stdout.contains("ALPN protocol: http/1.1"), "\(o.stdout.suffix(800))")
        #expect(o.stdout.contains("TLSv1.3"))
    }

    @Test func aNameThatIsNotVerifiedDoesNotAllowAConnection() throws {
        // Under a policy that allows by name only, a passthrough or insecure host's SNI is never
        // checked against a certificate: a tool could name one and dial anything.
        let d = try Self.tls.get()
        func exec(_ command: String) -> Harness.ShellResult {
            d.cli("exec --policy tls-by-name --user nobody -- sh -c \(Harness.shellQuote(command))")
        }
        let intercepted = exec("curl -sS --max-time 20 \(resolve(secureHost)) https://\(secureHost)/")
        #expect(intercepted.status == 0, "a verified name is allowed: \(intercepted.stderr)")
        let passthrough = exec("curl -sS --max-time 20 --cacert \(testHostCA) \(resolve("pinned.test.example")) https://pinned.test.example/")
        #expect(passthrough.status != 0, "an unverified passthrough name let the connection through: \(passthrough.stdout)")
        // an insecure host's name is verified after all when it is what allows the connection
        let insecure = exec("curl -sS --max-time 20 \(resolve("untrusted.test.example", port: 8443)) https://untrusted.test.example:8443/")
        #expect(insecure.status != 0, "an unverified insecure-host name let the connection through: \(insecure.stdout)")
        let events = d.waitForEvents { all in all.contains { $0.type == .tls && $0.reason?.contains("its name is not verified") == true } }
        #expect(events.contains { $0.type == .tls && $0.verdict == .deny
            && $0.reason == "pinned.test.example is on tls.passthrough, so its name is not verified, and the destination's address alone is not allowed" })
        #expect(events.contains { $0.type == .tls && $0.verdict == .deny && $0.destination?.port == 8443
            && $0.reason?.contains("not trusted") == true })
    }
}
