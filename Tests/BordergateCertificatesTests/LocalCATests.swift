import BordergateCertificates
import Foundation
import SwiftASN1
import Testing
import X509

@Suite struct LocalCATests {
    func tempState() -> String {
        let dir = NSTemporaryDirectory() + "bg-ca-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func theCAIsMadeOnceStoredWithAPrivateKeyAndLoadedAgain() throws {
        let files = LocalCA.Files(stateDirectory: tempState())
        #expect(try LocalCA.load(files) == nil)
        let made = try LocalCA.loadOrCreate(files, hostName: "build-1")
        let again = try LocalCA.loadOrCreate(files, hostName: "build-1")
        #expect(made.fingerprint == again.fingerprint, "a second use keeps the first CA")
        let attributes = try FileManager.default.attributesOfItem(atPath: files.key)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(made.subject.contains("CN=Bordergate local CA (build-1)"))
        let years = made.certificate.notValidAfter.timeIntervalSince(made.certificate.notValidBefore) / (365 * 86400)
        #expect(years > 9.9 && years < 10.1)
        let constraints = try #require(try made.certificate.extensions.basicConstraints)
        #expect(constraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(made.certificate.signatureAlgorithm == .ecdsaWithSHA256)
    }

    @Test func rotationReplacesTheCA() throws {
        let files = LocalCA.Files(stateDirectory: tempState())
        let first = try LocalCA.loadOrCreate(files)
        let second = try LocalCA.rotate(files)
        #expect(first.fingerprint != second.fingerprint)
        #expect(try LocalCA.load(files)?.fingerprint == second.fingerprint)
    }

    @Test func aDamagedCAIsAnErrorNotANewCA() throws {
        let files = LocalCA.Files(stateDirectory: tempState())
        _ = try LocalCA.loadOrCreate(files)
        try "garbage".write(toFile: files.key, atomically: true, encoding: .utf8)
        #expect(throws: CAError.self) { try LocalCA.loadOrCreate(files) }
        try FileManager.default.removeItem(atPath: files.key)
        do {
            _ = try LocalCA.load(files)
            Issue.record("a CA without its key loaded")
        } catch {
            #expect("\(error)".contains("ca.key is missing beside"), "\(error)")
            #expect("\(error)".contains("bordergate ca rotate"))
        }
    }

    @Test func aLeafNamesTheSNIAndTheUpstreamsNamesAndChainsToTheCA() throws {
        let ca = try LocalCA.make(hostName: "h")
        let names: [LeafName] = [.dns("api.example.com"), .dns("*.example.com"), LeafName.address("198.51.100.7")!,
                                 LeafName.address("2001:db8::7")!]
        let now = Date()
        let leaf = try ca.mintLeaf(for: names, now: now)
        #expect(leaf.chainDER.count == 2)
        let cert = try Certificate(derEncoded: leaf.chainDER[0])
        #expect(cert.issuer == ca.certificate.subject)
        #expect(try cert.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try cert.extensions.extendedKeyUsage?.contains(.serverAuth) == true)
        #expect(LocalCA.subjectNames(ofDER: leaf.chainDER[0]) == names)
        #expect("\(cert.subject)".contains("CN=api.example.com"))
        #expect(leaf.notValidAfter.timeIntervalSince(now) == LocalCA.leafValidity)
        // signed by the CA: its public key verifies the signature
        #expect(ca.certificate.publicKey.isValidSignature(cert.signature, for: cert))
    }

    @Test func namesPrintAsAddresses() {
        #expect(LeafName.address("198.51.100.7")?.description == "198.51.100.7")
        #expect(LeafName.address("2001:db8::7")?.description == "2001:db8:0:0:0:0:0:7")
        #expect(LeafName.address("example.com") == nil)
    }

    @Test func untrustedReasonsNameTheFailure() throws {
        let ca = try LocalCA.make(hostName: "h")
        let der = try ca.mintLeaf(for: [.dns("a.example")]).chainDER
        #expect(LocalCA.untrustedReason(ofDER: der[1]).hasPrefix("self-signed (CN=Bordergate local CA (h)"))
        #expect(LocalCA.untrustedReason(ofDER: der[0]).hasPrefix("unknown issuer (CN=Bordergate local CA (h)"))
        #expect(LocalCA.untrustedReason(ofDER: der[0], now: Date().addingTimeInterval(30 * 86400)).hasPrefix("expired on "))
    }
}
