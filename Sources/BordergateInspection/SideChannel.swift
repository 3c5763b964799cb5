import NIOCore

/// What the HTTP and PostgreSQL relays' channel handlers do alike on their own channel: writes in
/// order, keeping the last one's future; the output shut (once) when everything written before
/// is on the wire; and a read held back while the other channel is full, made when it can take
/// more. Each handler keeps one, and only its protocol's work itself.
struct SideChannel {
    private(set) var context: ChannelHandlerContext?
    private var lastWrite: EventLoopFuture<Void>?
    private var pendingRead = false
    private var outputClosed = false

    mutating func added(_ context: ChannelHandlerContext) { self.context = context }
    mutating func removed() { context = nil }

    mutating func write(_ data: NIOAny) {
        guard let context, !outputClosed else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(data, promise: promise)
        lastWrite = promise.futureResult
    }

    func flush() { context?.flush() }

    /// Shuts the channel's output once everything written before is on the wire.
    mutating func closeOutputAfterWrites() {
        guard let context, !outputClosed else { return }
        outputClosed = true
        let channel = context.channel
        context.flush()
        let done = lastWrite ?? context.eventLoop.makeSucceededVoidFuture()
        done.whenComplete { _ in channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) } }
    }

    /// The other channel can take more: read, if a read was held back.
    mutating func partnerWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    /// NIO asks to read: now, or once the other channel can take more.
    mutating func read(_ context: ChannelHandlerContext, allowed: Bool) {
        if allowed { context.read() } else { pendingRead = true }
    }
}
