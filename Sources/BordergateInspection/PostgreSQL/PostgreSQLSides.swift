import BordergateAudit
import BordergateProxy
import NIOCore

/// Which side a ``PGSide`` handler sits on: what the relay does with its messages, and whose
/// writability lets it read.
protocol PGSideRole {
    static var side: Side { get }
    static func read(_ frame: PGFrame, _ relay: PostgreSQLRelay) throws
    static func inputClosed(_ relay: PostgreSQLRelay)
    static func mayRead(_ relay: PostgreSQLRelay) -> Bool
    static func becameWritable(_ relay: PostgreSQLRelay)
}

enum FrontendRole: PGSideRole {
    static let side = Side.client
    static func read(_ frame: PGFrame, _ relay: PostgreSQLRelay) throws { try relay.fromClient(frame) }
    static func inputClosed(_ relay: PostgreSQLRelay) { relay.upstreamSide.closeOutputAfterWrites() }
    static func mayRead(_ relay: PostgreSQLRelay) -> Bool { relay.upstream.isWritable && relay.held == nil }
    static func becameWritable(_ relay: PostgreSQLRelay) { relay.upstreamSide.partnerWritable() }
}

enum BackendRole: PGSideRole {
    static let side = Side.server
    static func read(_ frame: PGFrame, _ relay: PostgreSQLRelay) throws { try relay.fromServer(frame) }
    static func inputClosed(_ relay: PostgreSQLRelay) { relay.clientSide.closeOutputAfterWrites() }
    static func mayRead(_ relay: PostgreSQLRelay) -> Bool { relay.client.isWritable }
    static func becameWritable(_ relay: PostgreSQLRelay) { relay.clientSide.partnerWritable() }
}

/// One of the relay's two channel handlers, after the framer: hands each message to the relay,
/// writes what the relay sends, and holds reads back while the other channel is full (a large
/// result waits in the server's socket, not in the proxy).
final class PGSide<Role: PGSideRole>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = PGFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var relay: PostgreSQLRelay!
    private var io = SideChannel()

    init(relay: PostgreSQLRelay) { self.relay = relay }

    func handlerAdded(context: ChannelHandlerContext) { io.added(context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        io.removed()
        relay = nil
    }

    var allocator: ByteBufferAllocator { io.context?.channel.allocator ?? ByteBufferAllocator() }

    func write(_ bytes: ByteBuffer) { io.write(wrapOutboundOut(bytes)) }
    func flush() { io.flush() }
    /// Shuts the channel's output once everything written before is on the wire.
    func closeOutputAfterWrites() { io.closeOutputAfterWrites() }
    func partnerWritable() { io.partnerWritable() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let relay, !relay.finished else { return }
        do {
            try Role.read(unwrapInboundIn(data), relay)
        } catch {
            relay.broken(by: Role.side, "\(error)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        relay?.flushBoth()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if let relay { Role.inputClosed(relay) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let relay {
            // the other side cannot be answered any more: it goes too, once what it has is written
            if Role.side == .client { relay.upstreamSide.closeOutputAfterWrites() } else { relay.clientSide.closeOutputAfterWrites() }
            let other = Role.side == .client ? relay.upstream : relay.client
            context.eventLoop.scheduleTask(in: .seconds(5)) { other.close(promise: nil) }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let relay else { return }
        if error is PGProtocolError {
            relay.broken(by: Role.side, "\(error)")
        } else {
            relay.connection.fail(end: .resetBy(Role.side), error: "\(Role.side): \(error)")
            relay.closeBoth()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let relay { Role.becameWritable(relay) }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        io.read(context, allowed: relay.map(Role.mayRead) ?? true)
    }
}

typealias PGClientSide = PGSide<FrontendRole>
typealias PGUpstreamSide = PGSide<BackendRole>
