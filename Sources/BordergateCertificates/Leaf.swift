import Crypto
import Foundation
import SwiftASN1
import X509

/// A name a leaf certificate is for: the SNI a tool sent, or the address it dialled when it sent
/// none.
public enum LeafName: Sendable, Hashable, CustomStringConvertible {
    case dns(String)
    /// 4 or 16 bytes, network order.
    case ip([UInt8])

    public var description: String {
        switch self {
        case .dns(let name): return name
        case .ip(let bytes):
            if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
            return stride(from: 0, to: bytes.count, by: 2).map { String(format: "%x", Int(bytes[$0]) << 8 | Int(bytes[$0 + 1])) }
                .joined(separator: ":")
        }
    }

    /// Parses a textual IPv4 or IPv6 address; nil for anything else.
    public static func address(_ text: String) -> LeafName? {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return .ip(withUnsafeBytes(of: v4) { Array($0) }) }
        if inet_pton(AF_INET6, text, &v6) == 1 { return .ip(withUnsafeBytes(of: v6) { Array($0) }) }
        return nil
    }

    var generalName: GeneralName {
        switch self {
        case .dns(let name): return .dnsName(name)
        case .ip(let bytes): return .ipAddress(ASN1OctetString(contentBytes: bytes[...]))
        }
    }
}

/// A certificate the local CA signed for one destination, with its own key.
public struct MintedLeaf: Sendable {
    /// DER of the leaf, then of the CA: the chain a tool is shown.
    public let chainDER: [[UInt8]]
    /// PKCS#8 DER of the leaf's private key.
    public let privateKeyDER: [UInt8]
    public let notValidAfter: Date
    public let names: [LeafName]
}

extension LocalCA {
    /// Leaves are short-lived: a leaked one is worth little, and the cache renews them long before.
    public static let leafValidity: TimeInterval = 7 * 86400

    /// Signs a leaf for `names` (the first is its subject's common name), valid for a week from an
    /// hour ago (clock skew), for TLS servers only.
    public func mintLeaf(for names: [LeafName], now: Date = Date()) throws -> MintedLeaf {
        guard let first = names.first else { throw CAError("a leaf certificate needs at least one name") }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName("Bordergate interception")
            CommonName(String(first.description.prefix(64)))
        }
        let caKeyID = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let notAfter = min(now.addingTimeInterval(Self.leafValidity), certificate.notValidAfter)
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: notAfter,
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names.map(\.generalName))
                SubjectKeyIdentifier(hash: publicKey)
                if let caKeyID { AuthorityKeyIdentifier(keyIdentifier: caKeyID) }
            },
            issuerPrivateKey: privateKey)
        return MintedLeaf(chainDER: [try Self.der(leaf), try Self.der(certificate)],
                          privateKeyDER: Array(key.derRepresentation), notValidAfter: notAfter, names: names)
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    /// The DNS and IP names a certificate (DER) is for, to copy onto its leaf: a tool that
    /// dialled one of several names of a host sees a leaf that names them all.
    public static func subjectNames(ofDER der: [UInt8]) -> [LeafName] {
        guard let cert = try? Certificate(derEncoded: der),
              let sans = try? cert.extensions.subjectAlternativeNames else { return [] }
        return sans.compactMap { name -> LeafName? in
            switch name {
            case .dnsName(let n): return .dns(n)
            case .ipAddress(let o) where o.bytes.count == 4 || o.bytes.count == 16: return .ip(Array(o.bytes))
            default: return nil
            }
        }
    }

    /// Why a certificate (DER) that failed verification is not trusted, as far as it shows: its
    /// dates, being self-signed, or who issued it.
    public static func untrustedReason(ofDER der: [UInt8], now: Date = Date()) -> String {
        guard let cert = try? Certificate(derEncoded: der) else { return "unknown issuer" }
        if now > cert.notValidAfter { return "expired on \(cert.notValidAfter.formatted(.iso8601))" }
        if now < cert.notValidBefore { return "not valid before \(cert.notValidBefore.formatted(.iso8601))" }
        if cert.issuer == cert.subject { return "self-signed (\(cert.subject))" }
        return "unknown issuer (\(cert.issuer))"
    }
}
