import Crypto
import Foundation
import SwiftASN1
import X509

/// Bordergate's own certificate authority, which signs the leaves the proxy shows a tool whose
/// TLS it terminates. It lives in the state directory (`tls/ca.pem`, `tls/ca.key` 0600), is made
/// on first use (ECDSA P-256, ten years), and is trusted only where an operator puts it: in the
/// private CA bundle of an `exec` child, or the system store after `bordergate ca install`.
public struct LocalCA: Sendable {
    public let certificate: Certificate
    /// The CA's P-256 key, in X.509's Sendable wrapper.
    public let privateKey: Certificate.PrivateKey
    let privateKeyPEM: String
    /// The certificate, PEM-encoded (what `ca export` prints and bundles append).
    public let certificatePEM: String
    /// SHA-256 of the certificate's DER, hex: names this CA in messages and keys the leaf cache.
    public let fingerprint: String

    public static let validity: TimeInterval = 10 * 365 * 86400

    init(certificate: Certificate, privateKey: P256.Signing.PrivateKey) throws {
        self.certificate = certificate
        self.privateKey = Certificate.PrivateKey(privateKey)
        self.privateKeyPEM = privateKey.pemRepresentation
        self.certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        self.fingerprint = SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }

    /// The certificate's subject, as text ("CN=Bordergate local CA (host),O=Bordergate").
    public var subject: String { "\(certificate.subject)" }

    /// The files of the CA under a state directory.
    public struct Files: Sendable {
        public let directory: String
        public var certificate: String { directory + "/ca.pem" }
        public var key: String { directory + "/ca.key" }
        public init(stateDirectory: String) { directory = stateDirectory + "/tls" }
    }

    /// A new CA, not yet stored: "Bordergate local CA (HOST)".
    public static func make(hostName: String, now: Date = Date()) throws -> LocalCA {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Bordergate")
            CommonName("Bordergate local CA (\(hostName))")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // pathlen 0: it signs leaves only, never another CA
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return try LocalCA(certificate: certificate, privateKey: key)
    }

    /// The stored CA, or nil when there is none yet. A CA that is there but unreadable is an
    /// error, never silently replaced: tools may trust it already.
    public static func load(_ files: Files) throws -> LocalCA? {
        let fm = FileManager.default
        let hasCert = fm.fileExists(atPath: files.certificate), hasKey = fm.fileExists(atPath: files.key)
        if !hasCert && !hasKey { return nil }
        guard hasCert && hasKey else {
            throw CAError("\(hasCert ? files.key : files.certificate) is missing beside \(hasCert ? files.certificate : files.key); run `bordergate ca rotate` to make a new CA (tools that trusted the old one must be given the new one)")
        }
        let certificate: Certificate
        let key: P256.Signing.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: try String(contentsOfFile: files.certificate, encoding: .utf8))
        } catch {
            throw CAError("\(files.certificate) is not a PEM certificate (\(error)); restore it or run `bordergate ca rotate`")
        }
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: files.key, encoding: .utf8))
        } catch {
            throw CAError("\(files.key) is not a PEM P-256 private key (\(error)); restore it or run `bordergate ca rotate`")
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw CAError("\(files.key) is not the key of \(files.certificate); restore the pair or run `bordergate ca rotate`")
        }
        return try LocalCA(certificate: certificate, privateKey: key)
    }

    /// The stored CA, made and stored first when there is none.
    public static func loadOrCreate(_ files: Files, hostName: String = LocalCA.hostName) throws -> LocalCA {
        if let ca = try load(files) { return ca }
        let ca = try make(hostName: hostName)
        try ca.store(files, replacing: false)
        // Of two processes making it at once, both use the one that was stored first.
        return try load(files) ?? ca
    }

    /// A new CA in place of the old one (its leaves are no longer trusted by anything that takes
    /// the new one).
    public static func rotate(_ files: Files, hostName: String = LocalCA.hostName) throws -> LocalCA {
        let ca = try make(hostName: hostName)
        try ca.store(files, replacing: true)
        return ca
    }

    /// Writes the key (0600) and then the certificate, each through a temporary file, so a reader
    /// never sees half a file; without `replacing`, an existing CA is kept.
    func store(_ files: Files, replacing: Bool) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: files.directory, withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
        } catch {
            throw CAError("cannot create \(files.directory): \(error.localizedDescription); check that the state directory is writable")
        }
        let suffix = ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        func write(_ text: String, to path: String, mode: Int) throws {
            let tmp = path + suffix
            guard fm.createFile(atPath: tmp, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
                throw CAError("cannot write \(tmp): \(Self.errnoText()); check that \(files.directory) is writable")
            }
            if replacing {
                guard rename(tmp, path) == 0 else {
                    let why = Self.errnoText()
                    unlink(tmp)
                    throw CAError("cannot replace \(path): \(why)")
                }
            } else {
                let linked = link(tmp, path) == 0 || errno == EEXIST
                let why = Self.errnoText()
                unlink(tmp)
                guard linked else { throw CAError("cannot create \(path): \(why)") }
            }
        }
        if !replacing, fm.fileExists(atPath: files.key) || fm.fileExists(atPath: files.certificate) { return }
        try write(privateKeyPEM + "\n", to: files.key, mode: 0o600)
        try write(certificatePEM, to: files.certificate, mode: 0o644)
    }

    static func errnoText() -> String { String(validatingCString: strerror(errno)) ?? "errno \(errno)" }

    /// This host's name, for the CA's subject.
    public static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "localhost" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public struct CAError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
