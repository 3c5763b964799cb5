import BordergateAudit
import BordergateCertificates
import BordergateProxy
import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// On the upstream channel, after its TLS handler: completes `result` with the destination's
/// certificate (DER) when its handshake succeeds, or fails it with a one-line reason, and keeps
/// a handshake error from reaching the HTTP handler (the tool is answered with an alert instead).
final class UpstreamHandshake: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let host: String
    private let promise: EventLoopPromise<[UInt8]?>
    var result: EventLoopFuture<[UInt8]?> { promise.futureResult }
    private var done = false
    /// Why BoringSSL refused the chain, seen by the verification callback (same event loop).
    private var failure: String?

    init(host: String, eventLoop: EventLoop) {
        self.host = host
        promise = eventLoop.makePromise()
    }

    func noteFailure(_ certificate: NIOSSLCertificate) {
        guard failure == nil else { return }
        failure = Self.why(certificate)
    }

    /// What is wrong with the first certificate that failed: its dates, or who issued it.
    static func why(_ certificate: NIOSSLCertificate) -> String {
        guard let der = try? certificate.toDERBytes() else { return "unknown issuer" }
        return LocalCA.untrustedReason(ofDER: der)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls, !done {
            done = true
            let peer = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
            promise.succeed(peer.flatMap { try? $0.toDERBytes() })
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !done else { return context.fireErrorCaught(error) }
        done = true
        promise.fail(ProxyError(describe(error)))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(ProxyError("\(host) closed the connection during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    private func describe(_ error: Error) -> String {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "upstream certificate for \(host) is not trusted: it does not name \(host)"
        }
        if let failure { return "upstream certificate for \(host) is not trusted: \(failure)" }
        if case NIOSSLError.handshakeFailed(let e) = error {
            return "TLS handshake with \(host) failed: \(TLSErrorText.short(e))"
        }
        return "TLS handshake with \(host) failed: \(error)"
    }
}

/// On the tool's channel, where its TLS handler goes: holds what the tool sent (its ClientHello)
/// until the upstream handshake is done, then puts the server handler for the minted leaf right
/// behind itself, replays it all into it, and leaves. If the destination cannot be trusted, the tool gets a fatal
/// alert and the event says why.
final class ClientHelloHold: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias MakeServerHandler = ([UInt8]?) throws -> NIOSSLServerHandler

    /// More than any ClientHello: a tool that sends this much before its ServerHello is not
    /// doing TLS.
    static let limit = 64 << 10

    private let connection: InspectedConnection
    private let host: String
    private let logger: Logger
    private let make: MakeServerHandler
    private var held: [NIOAny] = []
    private var heldBytes = 0
    private var inputClosed = false
    private var released = false

    init(connection: InspectedConnection, upstream: EventLoopFuture<[UInt8]?>, host: String, logger: Logger,
         make: @escaping MakeServerHandler) {
        self.connection = connection
        self.host = host
        self.logger = logger
        self.make = make
        self.pendingUpstream = upstream
    }

    private var pendingUpstream: EventLoopFuture<[UInt8]?>?
    /// Told when this handler refuses, so the tool's handshake ending is not reported twice.
    weak var watch: ClientHandshakeWatch?

    /// How long the destination may take for its handshake.
    static let upstreamTimeout = TimeAmount.seconds(15)
    private var timer: Scheduled<Void>?

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pendingUpstream?.whenComplete { result in
            let (hold, context) = bound.value
            hold.timer?.cancel()
            hold.upstreamDone(result, context: context)
        }
        pendingUpstream = nil
        timer = context.eventLoop.scheduleTask(in: Self.upstreamTimeout) {
            let (hold, context) = bound.value
            guard !hold.released, context.channel.isActive else { return }
            hold.refuse("the TLS handshake with \(hold.host) did not finish within \(Self.upstreamTimeout.nanoseconds / 1_000_000_000) s", context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !released else { return context.fireChannelRead(data) }
        heldBytes += unwrapInboundIn(data).readableBytes
        guard heldBytes <= Self.limit else {
            connection.fail(end: .proxyError, error: "the tool sent over \(Self.limit) bytes before its TLS handshake was answered")
            context.close(promise: nil)
            connection.upstream.close(promise: nil)
            return
        }
        held.append(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !released, let e = event as? ChannelEvent, case .inputClosed = e {
            inputClosed = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func upstreamDone(_ result: Result<[UInt8]?, Error>, context: ChannelHandlerContext) {
        guard context.channel.isActive, !refused else { return }
        switch result {
        case .failure(let error):
            let reason = (error as? ProxyError)?.description ?? "\(error)"
            refuse(reason, context: context)
        case .success(let certificate):
            let server: NIOSSLServerHandler
            do {
                server = try make(certificate)
            } catch {
                refuse("cannot make a certificate for \(host): \(error)", context: context, end: .proxyError)
                return
            }
            released = true
            do {
                // behind, not before: what this handler fires goes to the next handler only
                try context.pipeline.syncOperations.addHandler(server, position: .after(self))
            } catch {
                refuse("cannot start TLS with the tool: \(error)", context: context, end: .proxyError)
                return
            }
            for data in held { context.fireChannelRead(data) }
            held = []
            context.fireChannelReadComplete()
            if inputClosed { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    /// The destination is not what it must be: the tool gets a fatal handshake_failure alert (40)
    /// rather than a certificate, and a `tls` event names the reason.
    private var refused = false

    private func refuse(_ reason: String, context: ChannelHandlerContext, end: ConnectionEnding = .upstreamFailed) {
        guard !refused else { return }
        refused = true
        held = []
        watch?.disarm()
        connection.publish(TLSEvents.event(connection, verdict: .deny, reason: reason))
        connection.fail(end: end, error: reason)
        let channel = context.channel
        context.writeAndFlush(NIOAny(ByteBuffer(bytes: ProtocolRefusal.tlsAlert(40)))).whenComplete { _ in
            channel.close(promise: nil)
        }
        connection.upstream.close(promise: nil)
    }
}

/// On the tool's channel, after its TLS handler: a tool that refuses the minted leaf (an unknown
/// CA alert, or a close before the handshake ends: a pinned client) gets an event that says so
/// and names the way out (`tls.passthrough`); nothing is learned automatically.
final class ClientHandshakeWatch: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connection: InspectedConnection
    private let host: String
    private var done = false

    init(connection: InspectedConnection, host: String) {
        self.connection = connection
        self.host = host
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls, !done {
            done = true
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        if !done, let e = event as? ChannelEvent, case .inputClosed = e {
            rejected("closed the connection during the TLS handshake", context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !done else { return context.fireErrorCaught(error) }
        if case NIOSSLError.handshakeFailed(let e) = error {
            rejected("ended the TLS handshake: \(TLSErrorText.short(e))", context: context)
        } else if case NIOSSLError.uncleanShutdown = error {
            rejected("closed the connection during the TLS handshake", context: context)
        } else {
            rejected("failed the TLS handshake: \(error)", context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { rejected("closed the connection during the TLS handshake", context: context) }
        context.fireChannelInactive()
    }

    /// The connection was refused before the tool's handshake began: its end is no rejection.
    func disarm() { done = true }

    private func rejected(_ what: String, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        let reason = "the tool \(what) for \(host): it may not trust Bordergate's CA, or pin its certificates; "
            + "give it the CA (bordergate exec does; bordergate ca install for others) or add \(host) to tls.passthrough"
        connection.publish(TLSEvents.event(connection, verdict: .deny, reason: reason))
        connection.fail(end: .resetBy(.client), error: reason)
        context.close(promise: nil)
        connection.upstream.close(promise: nil)
    }
}

enum TLSEvents {
    static func event(_ connection: InspectedConnection, verdict: Verdict, reason: String) -> AuditEvent {
        let c = connection.connection
        return AuditEvent(time: Date(), type: .tls, verdict: verdict, reason: reason, process: c.process,
                          destination: c.destination, protocol: .tls, policy: c.policy, connection: c.connectionID)
    }
}

enum TLSErrorText {
    /// BoringSSL's reason codes, without the library's prefix: "TLSV1_ALERT_UNKNOWN_CA".
    static func short(_ error: BoringSSLError) -> String {
        let text = "\(error)"
        let reasons = text.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "," || $0 == "]" || $0 == "[" })
            .filter { $0.count > 3 && $0.allSatisfy { $0.isUppercase || $0 == "_" || $0.isNumber } && $0.contains("_") }
        return reasons.isEmpty ? text : reasons.map(String.init).joined(separator: ", ")
    }
}
