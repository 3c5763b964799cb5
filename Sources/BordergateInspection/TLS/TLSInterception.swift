import BordergateCertificates
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL

/// What TLS interception needs beyond a connection's plan, built by the composition root from
/// the configuration in force (`tls:` and the state directory's CA) and rebuilt when it changes.
public final class TLSInterception: Sendable {
    /// Hosts whose TLS is never terminated (`tls.passthrough`): pinned clients.
    let isPassthrough: @Sendable (String) -> Bool
    /// Hosts whose certificate is not verified (`tls.insecure-hosts`); every such connection's
    /// event says so.
    let isInsecure: @Sendable (String) -> Bool
    /// For upstreams: the system's roots plus `tls.trust`, full verification.
    let verifying: NIOSSLContext
    /// For `tls.insecure-hosts` only.
    let unverified: NIOSSLContext
    let leaves: LeafContexts

    /// What the tool and the destination are offered: only what Bordergate can inspect, so both
    /// negotiate down to it.
    static let applicationProtocols = ["http/1.1"]
    /// How long a close waits for the peer's close_notify: a peer that is gone is not waited on
    /// for NIOSSL's default 5 s.
    static let shutdownTimeout = TimeAmount.milliseconds(500)

    /// `trustFiles`: PEM files of extra CAs for upstream verification. Throws with the file named
    /// when one cannot be read.
    public init(ca: LocalCA, trustFiles: [String], isPassthrough: @escaping @Sendable (String) -> Bool,
                isInsecure: @escaping @Sendable (String) -> Bool, leafCacheSize: Int = 512) throws {
        self.isPassthrough = isPassthrough
        self.isInsecure = isInsecure
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.applicationProtocols = Self.applicationProtocols
        client.certificateVerification = .fullVerification
        client.shutdownTimeout = Self.shutdownTimeout
        client.trustRoots = .default
        for file in trustFiles {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(file)
                guard !certificates.isEmpty else { throw CAError("no certificate in it") }
                client.additionalTrustRoots.append(.certificates(certificates))
            } catch {
                throw CAError("tls.trust: cannot read CA certificates from \(file) (\(error)); expected a PEM file of one or more certificates")
            }
        }
        verifying = try NIOSSLContext(configuration: client)
        client.certificateVerification = .none
        unverified = try NIOSSLContext(configuration: client)
        leaves = LeafContexts(ca: ca, capacity: leafCacheSize)
    }
}

/// Server contexts for minted leaves, by the name the tool asked for: least recently used first
/// out, so a second connection to a host costs no key generation and no signature, and the
/// memory stays bounded whatever a tool dials.
final class LeafContexts: Sendable {
    let ca: LocalCA
    let capacity: Int
    private struct Entry {
        var context: NIOSSLContext
        var renewAfter: Date
        var used: UInt64
    }
    private let state = NIOLockedValueBox<(entries: [String: Entry], clock: UInt64, minted: Int)>(([:], 0, 0))

    init(ca: LocalCA, capacity: Int) {
        self.ca = ca
        self.capacity = max(1, capacity)
    }

    /// How many leaves were minted so far (for tests and the bench).
    var minted: Int { state.withLockedValue { $0.minted } }

    /// A server context whose leaf names `key` and, on a miss, also `copiedNames` (the upstream's
    /// own), signed by the local CA.
    func context(for key: LeafName, copying copiedNames: [LeafName], now: Date = Date()) throws -> NIOSSLContext {
        let id = key.description
        if let hit = state.withLockedValue({ s -> NIOSSLContext? in
            guard var e = s.entries[id], e.renewAfter > now else { return nil }
            s.clock += 1
            e.used = s.clock
            s.entries[id] = e
            return e.context
        }) { return hit }
        var names = [key]
        for n in copiedNames where !names.contains(n) && names.count < 100 { names.append(n) }
        let leaf = try ca.mintLeaf(for: names, now: now)
        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: try leaf.chainDER.map { .certificate(try NIOSSLCertificate(bytes: $0, format: .der)) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: leaf.privateKeyDER, format: .der)))
        server.minimumTLSVersion = .tlsv12
        server.applicationProtocols = TLSInterception.applicationProtocols
        server.shutdownTimeout = TLSInterception.shutdownTimeout
        let context = try NIOSSLContext(configuration: server)
        // renewed a day before it expires, so a tool never sees one about to
        let renewAfter = leaf.notValidAfter.addingTimeInterval(-86400)
        state.withLockedValue { s in
            s.clock += 1
            s.minted += 1
            s.entries[id] = Entry(context: context, renewAfter: renewAfter, used: s.clock)
            if s.entries.count > capacity, let oldest = s.entries.min(by: { $0.value.used < $1.value.used })?.key {
                s.entries[oldest] = nil
            }
        }
        return context
    }
}
