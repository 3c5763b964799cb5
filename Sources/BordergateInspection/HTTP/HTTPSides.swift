import BordergateAudit
import BordergateProxy
import NIOCore
import NIOHTTP1
import NIOSSL

/// What differs between the relay's two channel handlers: which parts they read, what the relay
/// does with them, and whose writability lets them read.
protocol HTTPSideRole {
    associatedtype Inbound
    associatedtype Outbound
    static var side: Side { get }
    static func read(_ part: Inbound, _ relay: HTTPRelay)
    static func readComplete(_ relay: HTTPRelay)
    static func inputClosed(_ relay: HTTPRelay)
    static func inactive(_ relay: HTTPRelay)
    /// The peer's bytes are not HTTP.
    static func broken(_ why: String, _ relay: HTTPRelay)
    /// Whether this side may read now (the other channel can take what it reads).
    static func mayRead(_ relay: HTTPRelay) -> Bool
    /// This channel can take more: the other side may read again.
    static func becameWritable(_ relay: HTTPRelay)
}

/// The tool's channel: requests in, responses out. It reads only while upstream can take more
/// and fewer than ``HTTPRelay/pipelineLimit`` requests wait for answers.
enum ToolRole: HTTPSideRole {
    typealias Inbound = HTTPServerRequestPart
    typealias Outbound = HTTPServerResponsePart
    static let side = Side.client
    static func read(_ part: HTTPServerRequestPart, _ relay: HTTPRelay) {
        switch part {
        case .head(let head): relay.requestHead(head)
        case .body(let body): relay.requestBody(body)
        case .end(let trailers): relay.requestEnd(trailers)
        }
    }
    static func readComplete(_ relay: HTTPRelay) { relay.requestsFlushed() }
    static func inputClosed(_ relay: HTTPRelay) { relay.clientEOF() }
    static func inactive(_ relay: HTTPRelay) { relay.upstream.close(promise: nil) }
    static func broken(_ why: String, _ relay: HTTPRelay) { relay.brokenClient(why) }
    static func mayRead(_ relay: HTTPRelay) -> Bool { relay.upstream.isWritable && !relay.backlogged }
    static func becameWritable(_ relay: HTTPRelay) { relay.upstreamSide.partnerWritable() }
}

/// The upstream channel: requests out, responses in.
enum ServerRole: HTTPSideRole {
    typealias Inbound = HTTPClientResponsePart
    typealias Outbound = HTTPClientRequestPart
    static let side = Side.server
    static func read(_ part: HTTPClientResponsePart, _ relay: HTTPRelay) {
        switch part {
        case .head(let head): relay.responseHead(head)
        case .body(let body): relay.responseBody(body)
        case .end(let trailers): relay.responseEnd(trailers)
        }
    }
    static func readComplete(_ relay: HTTPRelay) { relay.responsesFlushed() }
    static func inputClosed(_ relay: HTTPRelay) { relay.upstreamClosed() }
    static func inactive(_ relay: HTTPRelay) { relay.upstreamClosed() }
    static func broken(_ why: String, _ relay: HTTPRelay) { relay.brokenUpstream(why) }
    static func mayRead(_ relay: HTTPRelay) -> Bool { relay.client.isWritable }
    static func becameWritable(_ relay: HTTPRelay) { relay.clientSide.partnerWritable() }
}

typealias ClientSide = HTTPSide<ToolRole>
typealias UpstreamSide = HTTPSide<ServerRole>

/// One of the relay's two channel handlers, last in its pipeline: hands what it reads to the
/// relay, writes what the relay sends, and holds reads back while the other channel is full.
final class HTTPSide<Role: HTTPSideRole>: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = Role.Inbound
    typealias OutboundIn = Role.Outbound
    typealias OutboundOut = Role.Outbound

    /// Strong, and dropped when the handler leaves the pipeline: the relay lives as long as a side does.
    private var relay: HTTPRelay!
    private var io = SideChannel()

    init(relay: HTTPRelay) { self.relay = relay }

    func handlerAdded(context: ChannelHandlerContext) { io.added(context) }

    func handlerRemoved(context: ChannelHandlerContext) {
        io.removed()
        relay = nil
    }

    func write(_ part: Role.Outbound) { io.write(wrapOutboundOut(part)) }
    func flush() { io.flush() }
    /// Shuts the channel's output once everything written before is on the wire.
    func closeOutputAfterWrites() { io.closeOutputAfterWrites() }
    /// The other channel can take more: read, if a read was held back.
    func partnerWritable() { io.partnerWritable() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let relay { Role.read(unwrapInboundIn(data), relay) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let relay { Role.readComplete(relay) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if let relay { Role.inputClosed(relay) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let relay { Role.inactive(relay) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let relay else { return }
        // A TCP close without TLS's close_notify: most servers and many tools end that way, and
        // HTTP's own framing says whether anything was cut short. The close follows.
        if case NIOSSLError.uncleanShutdown = error {
            // ...unless a response was still arriving: one whose end is the connection's end
            // could have been cut, and the tool must not see a clean close of it
            if Role.side == .server, relay.response != nil {
                relay.connection.fail(end: .resetBy(.server), error: "server: the TLS connection ended without close_notify during a response")
                relay.closeBoth()
            }
            return
        }
        if error is HTTPParserError {
            Role.broken("\(error)", relay)
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
        // Back-pressure, and a bound on pipelining: requests wait in the tool's socket, not here.
        io.read(context, allowed: relay.map(Role.mayRead) ?? true)
    }
}
