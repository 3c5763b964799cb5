import BordergateAudit
import NIOCore

/// Relays bytes between two channels, one handler on each, with back-pressure (a side reads only
/// while its partner is writable) and half-close (an EOF on one side shuts the other's output).
/// After the `connect-proxy` example of swift-nio-examples.
final class GlueHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let session: RelaySession
    /// Which end this handler reads.
    private let side: Side
    private var closed = false
    private var partnerInactive = false

    /// Off when a ``ByteAccounting`` in the pipeline already counts and reports closes.
    private let counting: Bool

    private init(session: RelaySession, side: Side, counting: Bool) {
        self.session = session
        self.side = side
        self.counting = counting
    }

    /// A connected pair: `.0` goes on the tool's channel, `.1` on the upstream channel.
    static func matchedPair(session: RelaySession, counting: Bool = true) -> (GlueHandler, GlueHandler) {
        let client = GlueHandler(session: session, side: .client, counting: counting)
        let server = GlueHandler(session: session, side: .server, counting: counting)
        client.partner = server
        server.partner = client
        return (client, server)
    }

    private func partnerWrite(_ data: ByteBuffer) {
        context?.write(NIOAny(data), promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    /// The partner sent EOF: send ours once everything queued before it is written. NIO turns
    /// an output close on a side whose input is already shut into a full close, which would
    /// discard writes still queued behind a slow reader, so the close waits for them.
    private func partnerWriteEOF() {
        guard let context else { return }
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.whenComplete { _ in
            channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        }
    }

    private func partnerCloseFull() {
        context?.close(promise: nil)
    }

    /// The partner closed: finish writing what it sent, then send EOF (closing outright would
    /// discard bytes still queued behind a slow reader).
    private func partnerGone() {
        partnerInactive = true
        partnerWriteEOF()
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }
}

extension GlueHandler: ChannelDuplexHandler {
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if partnerInactive {
            // the other side is gone: nothing can carry these bytes
            context.close(promise: nil)
            return
        }
        if counting {
            if side == .client { session.countSent(buffer.readableBytes) } else { session.countReceived(buffer.readableBytes) }
        }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closed {
            closed = true
            if counting { session.sideClosed(side) }
        }
        partner?.partnerGone()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.partnerWriteEOF()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let end = ConnectionEnding.resetBy(side)
        session.fail(end: end, error: "\(side): \(error)")
        context.close(promise: nil)
        partner?.partnerCloseFull()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
