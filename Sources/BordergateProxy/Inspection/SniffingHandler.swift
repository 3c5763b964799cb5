import NIOCore

/// The first handler of an inspected connection, built like NIOTLS's `SNIHandler` and
/// `ApplicationProtocolNegotiationHandler`: it buffers what the tool sends while it sniffs the
/// first bytes (at most a head's worth, for at most `timeout`), hands the outcome to `decide`
/// once, and when the future that returns completes either replays everything it held to the
/// handlers added behind it and removes itself, or drops it all (a refused connection).
///
/// The channel has autoRead off: this handler asks for each read while it sniffs, and nothing
/// more; the handlers that follow it turn reading on.
final class SniffingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias Decide = (SniffOutcome, Channel) -> EventLoopFuture<SniffDisposition>

    private var machine = SniffingStateMachine()
    private let timeout: TimeAmount
    private let decide: Decide
    private var timer: Scheduled<Void>?
    private var started = false

    init(timeout: TimeAmount, decide: @escaping Decide) {
        self.timeout = timeout
        self.decide = decide
    }

    /// Work the sniffer did so far (for tests).
    var bytesExamined: Int { machine.bytesExamined }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel() // it holds the channel and the head until it fires
        timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        // A server-speaks-first protocol sends nothing: it gets no hostname, once the time is up.
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.act(handler.machine.timedOut(), context: context)
        }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        act(machine.channelRead(data, bytes: unwrapInboundIn(data)), context: context) { $0.fireChannelRead(data) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        act(machine.channelReadComplete(), context: context) { $0.fireChannelReadComplete() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        act(machine.userInboundEvent(event), context: context) { $0.fireUserInboundEventTriggered(event) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        act(machine.channelInactive(), context: context) { $0.fireChannelInactive() }
    }

    private func act(_ action: SniffingStateMachine.Action, context: ChannelHandlerContext,
                     forward: (ChannelHandlerContext) -> Void = { _ in }) {
        switch action {
        case .read:
            context.read()
        case .decide(let outcome):
            timer?.cancel()
            timer = nil
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            decide(outcome, context.channel).whenComplete { result in
                let (handler, context) = loopBound.value
                switch result {
                case .success(let disposition):
                    handler.decided(disposition, context: context)
                case .failure:
                    handler.decided(.discard, context: context)
                    context.close(promise: nil)
                }
            }
        case .forward:
            forward(context)
        case .none:
            break
        }
    }

    private func decided(_ disposition: SniffDisposition, context: ChannelHandlerContext) {
        guard machine.decided(disposition) else { return }
        while let held = machine.nextToReplay() {
            switch held {
            case .read(let data): context.fireChannelRead(data)
            case .readComplete: context.fireChannelReadComplete()
            case .event(let event): context.fireUserInboundEventTriggered(event)
            case .inactive: context.fireChannelInactive()
            }
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
