import BordergateAudit
import BordergateCertificates
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOSSL

/// TLS through the proxy, intercepted: the destination is dialled with TLS first (verified
/// against the system's roots and `tls.trust`), then the tool is shown a leaf the local CA signed
/// for the name it asked for (and the names the destination's certificate carries), and the
/// plaintext between the two goes through the HTTP handler: masking, recording and per-request
/// verdicts work inside TLS. Hosts on `tls.passthrough` are relayed as they are.
///
/// Upstream first, so that a destination that cannot be trusted fails the tool's handshake with
/// an alert (never a certificate that hides the failure), and so the leaf can copy its names.
public struct TLSInspector: ProtocolHandler {
    public typealias Settings = @Sendable () -> TLSInterception?

    let settings: Settings
    let http: HTTPInspector
    let raw: RawRelay

    public init(settings: @escaping Settings, http: HTTPInspector, raw: RawRelay) {
        self.settings = settings
        self.http = http
        self.raw = raw
    }

    public enum Value: Sendable {
        case intercepted(HTTPInspector.Value)
        case passedThrough(RawRelay.Value)
    }

    public func supports(_ plan: InspectionPlan) -> Bool {
        plan.interceptTLS && (plan.protocol == nil || plan.protocol == .tls)
    }

    public func setup(connection: InspectedConnection, logger: Logger) throws -> Value {
        guard case .tls(let serverName) = connection.sniffed else {
            throw ProxyError("TLS interception was asked for a connection that does not start with a ClientHello")
        }
        // Fail closed: without its CA and trust settings, nothing can be intercepted or verified.
        guard let tls = settings() else {
            throw ProxyError("TLS interception is not configured (no local CA could be loaded); the connection is refused")
        }
        let address = connection.connection.target.ipAddress ?? "?"
        let shown = serverName ?? address
        if let serverName, tls.isPassthrough(serverName) {
            // The SNI of a passthrough host is never checked against a certificate: it must not be
            // what allowed the connection (a tool could name a listed host and dial anywhere).
            guard Self.allowedWithoutName(connection) else {
                connection.publish(TLSEvents.event(connection, verdict: .deny, reason: "\(serverName) is on tls.passthrough, so its name is not verified, and the destination's address alone is not allowed"))
                throw ProxyError("passthrough host \(serverName): the address alone is not allowed, and the name cannot be verified without interception")
            }
            connection.publish(TLSEvents.event(connection, verdict: .audit, reason: "\(serverName) is on tls.passthrough: relayed as it is, content not inspected"))
            return .passedThrough(try raw.setup(connection: connection, logger: logger))
        }
        // Unverified only where the name does not decide: otherwise a tool could name an insecure
        // host and dial anything; it is verified against the name it gave instead.
        let insecure = tls.isInsecure(shown) && Self.allowedWithoutName(connection)
        if insecure {
            connection.publish(TLSEvents.event(connection, verdict: .audit,
                                               reason: "certificate of \(shown) not verified (tls.insecure-hosts)"))
        }
        try connection.addAccounting()
        let watch = UpstreamHandshake(host: shown, eventLoop: connection.upstream.eventLoop)
        // SNI only for a name: an address is never sent as SNI, and is verified against the
        // certificate's IP names instead.
        let sni = serverName.flatMap { LeafName.address($0) == nil ? $0 : nil }
        let upstreamTLS = try Self.clientHandler(context: insecure ? tls.unverified : tls.verifying, serverHostname: sni, watch: watch)
        try connection.upstream.pipeline.syncOperations.addHandler(upstreamTLS)
        try connection.upstream.pipeline.syncOperations.addHandler(watch)
        let key = serverName.map { LeafName.address($0) ?? .dns($0) } ?? LeafName.address(address) ?? .dns(address)
        let hold = ClientHelloHold(connection: connection, upstream: watch.result, host: shown, logger: logger) { upstreamCertificate in
            let copied = upstreamCertificate.map { LocalCA.subjectNames(ofDER: $0) } ?? []
            return NIOSSLServerHandler(context: try tls.leaves.context(for: key, copying: copied))
        }
        let watchClient = ClientHandshakeWatch(connection: connection, host: shown)
        hold.watch = watchClient
        try connection.client.pipeline.syncOperations.addHandler(hold)
        try connection.client.pipeline.syncOperations.addHandler(watchClient)
        return .intercepted(try http.addPipelines(connection: connection, serverName: serverName, protocol: .tls, logger: logger))
    }

    public func handle(value: Value, logger: Logger) async {
        switch value {
        case .intercepted(let v): await http.handle(value: v, logger: logger)
        case .passedThrough(let v): await raw.handle(value: v, logger: logger)
        }
    }

    /// Whether the connection's verdict stands without its hostname: it never needed one, or the
    /// destination's address alone is allowed.
    static func allowedWithoutName(_ connection: InspectedConnection) -> Bool {
        guard let decide = connection.connection.decide else { return true }
        return decide(.none).relay
    }

    /// The old-style verification callback only observes (it returns BoringSSL's own result), to
    /// name why a certificate failed: BoringSSL's error says only CERTIFICATE_VERIFY_FAILED, and
    /// the new-style callback would replace BoringSSL's verification rather than watch it.
    private static func clientHandler(context: NIOSSLContext, serverHostname: String?,
                                      watch: UpstreamHandshake) throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context, serverHostname: serverHostname) { result, certificate in
            if result == .failed { watch.noteFailure(certificate) }
            return result
        }
    }
}
