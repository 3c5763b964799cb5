import BordergateAudit
import BordergateProxy
import NIOCore
import NIOHTTP1

/// On the tool's channel: requests in, responses out. Reads from the tool only while the upstream
/// channel can take more (back-pressure both ways, as the raw relay does).
final class ClientSide: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Strong, and dropped when the handler leaves the pipeline: the relay lives as long as a side does.
    private var relay: HTTPRelay!
    private var lastWrite: EventLoopFuture<Void>?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    init(relay: HTTPRelay) { self.relay = relay }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        relay = nil
    }

    func write(_ part: HTTPServerResponsePart) {
        guard let context else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(part), promise: promise)
        lastWrite = promise.futureResult
    }

    /// Shuts the channel's output once everything written before is on the wire.
    func closeOutputAfterWrites() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        let done = lastWrite ?? context.eventLoop.makeSucceededVoidFuture()
        done.whenComplete { _ in channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) } }
    }

    func flush() { context?.flush() }

    /// Upstream can take more: read what the tool sends, if a read was held back.
    func partnerWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): relay?.requestHead(head)
        case .body(let body): relay?.requestBody(body)
        case .end(let trailers): relay?.requestEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { relay?.requestsFlushed() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            relay?.clientEOF()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        relay?.upstream.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is HTTPParserError {
            relay?.brokenClient("\(error)")
        } else {
            relay?.connection.fail(end: .resetBy(.client), error: "client: \(error)")
            relay?.closeBoth()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { relay?.upstreamSide.partnerWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        // Back-pressure, and a bound on pipelining: requests wait in the tool's socket, not here.
        if let relay, !relay.upstream.isWritable || relay.backlogged { pendingRead = true } else { context.read() }
    }
}

/// On the upstream channel: requests out, responses in.
final class UpstreamSide: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// Strong, and dropped when the handler leaves the pipeline: the relay lives as long as a side does.
    private var relay: HTTPRelay!
    private var lastWrite: EventLoopFuture<Void>?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    init(relay: HTTPRelay) { self.relay = relay }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        relay = nil
    }

    func write(_ part: HTTPClientRequestPart) {
        guard let context else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(part), promise: promise)
        lastWrite = promise.futureResult
    }

    /// Shuts the channel's output once everything written before is on the wire.
    func closeOutputAfterWrites() {
        guard let context else { return }
        let channel = context.channel
        context.flush()
        let done = lastWrite ?? context.eventLoop.makeSucceededVoidFuture()
        done.whenComplete { _ in channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) } }
    }

    func flush() { context?.flush() }

    func partnerWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): relay?.responseHead(head)
        case .body(let body): relay?.responseBody(body)
        case .end(let trailers): relay?.responseEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { relay?.responsesFlushed() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            relay?.upstreamClosed()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        relay?.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is HTTPParserError {
            relay?.brokenUpstream("\(error)")
        } else {
            relay?.connection.fail(end: .resetBy(.server), error: "server: \(error)")
            relay?.closeBoth()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { relay?.clientSide.partnerWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if relay?.client.isWritable ?? true { context.read() } else { pendingRead = true }
    }
}
