import BordergateAudit
import Logging
import NIOCore

/// Runs an inspected connection once its verdict lets it through and its original destination is
/// dialled. Modelled on Hummingbird's `ServerChildChannel`: ``setup(connection:logger:)`` builds
/// both pipelines synchronously, ``handle(value:logger:)`` runs the connection to its end.
///
/// Implementations live in `BordergateInspection` (HTTP, TLS, PostgreSQL, recording), which the
/// composition root registers in ``ProtocolHandlers``; the proxy itself knows no protocol beyond
/// recognising it.
public protocol ProtocolHandler: Sendable {
    associatedtype Value: Sendable

    /// Whether it carries out everything `plan` asks. The proxy refuses a connection for which no
    /// registered handler does, rather than relay it half-inspected.
    func supports(_ plan: InspectionPlan) -> Bool

    /// Adds the handlers for both channels, on their event loop (the client and upstream channels
    /// share it); both have autoRead off until this returns. What the client sent before (the
    /// sniffed head, an EOF) is replayed through the client pipeline right after.
    func setup(connection: InspectedConnection, logger: Logger) throws -> Value

    /// Runs the connection until both sides are closed.
    func handle(value: Value, logger: Logger) async
}

/// The handlers the proxy can run, by the protocol a connection speaks. A new protocol is one
/// ``register(_:for:)``.
public struct ProtocolHandlers: Sendable {
    private var byProtocol: [ProxyProtocol: any ProtocolHandler] = [:]
    private var fallback: (any ProtocolHandler)?

    public init() {}

    /// Runs `handler` for connections that speak `protocols`.
    public mutating func register(_ handler: any ProtocolHandler, for protocols: [ProxyProtocol]) {
        for p in protocols { byProtocol[p] = handler }
    }

    /// Runs `handler` for connections whose protocol has no handler of its own.
    public mutating func registerFallback(_ handler: any ProtocolHandler) {
        fallback = handler
    }

    /// The handler for a connection that speaks `spoken` with `plan`, if one can carry the plan out.
    /// A protocol's own handler that cannot carry the plan out leaves it to the fallback (TLS that
    /// is not intercepted goes to the raw relay when the plan allows it relayed as it is).
    func handler(for plan: InspectionPlan, speaking spoken: ProxyProtocol) -> (any ProtocolHandler)? {
        if let own = byProtocol[plan.protocol ?? spoken], own.supports(plan) { return own }
        if let fallback, fallback.supports(plan) { return fallback }
        return nil
    }
}

/// What a ``ProtocolHandler`` works with: both channels, what is known of the connection, and the
/// accounting that produces its `close` event.
public struct InspectedConnection: Sendable {
    /// The tool's channel.
    public let client: Channel
    /// The channel to the original destination.
    public let upstream: Channel
    public let connection: ProxiedConnection
    public let plan: InspectionPlan
    /// What the sniffer found in the first bytes.
    public let sniffed: SniffedProtocol
    let session: RelaySession

    /// Relays the bytes as they are between the two channels, with back-pressure and half-close,
    /// counting them for the `close` event: adds a handler to each pipeline.
    public func addRawRelay() throws {
        let (clientSide, upstreamSide) = GlueHandler.matchedPair(session: session)
        try upstream.pipeline.syncOperations.addHandler(upstreamSide)
        try client.pipeline.syncOperations.addHandler(clientSide)
    }
}

extension InspectedConnection {
    /// Counts the bytes each side sends, at the socket edge of both pipelines, and reports each
    /// side's close, for the `close` event: for a handler that does not use ``addRawRelay()``.
    /// Add it before any codec, so it sees the bytes as they are on the wire.
    public func addAccounting() throws {
        try client.pipeline.syncOperations.addHandler(ByteAccounting(session: session, side: .client))
        try upstream.pipeline.syncOperations.addHandler(ByteAccounting(session: session, side: .server))
    }

    /// After ``addAccounting()``: relays the bytes as they are from here on (an upgraded HTTP
    /// connection), without counting them twice. Adds a handler to the end of each pipeline.
    public func addUncountedRawRelay() throws {
        let (clientSide, upstreamSide) = GlueHandler.matchedPair(session: session, counting: false)
        try upstream.pipeline.syncOperations.addHandler(upstreamSide)
        try client.pipeline.syncOperations.addHandler(clientSide)
    }

    /// Sends an event of this connection (a refused request, what was masked).
    public func publish(_ event: AuditEvent) { session.sink.publish(event) }

    /// Names how the connection ended, for its `close` event; the first call wins.
    public func fail(end: ConnectionEnding, error: String) { session.fail(end: end, error: error) }

    /// What went each way so far.
    public var bytes: AuditEvent.Bytes { session.bytes }
}

/// Counts what one side sends and reports when it closes; passes everything on unchanged.
final class ByteAccounting: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let session: RelaySession
    private let side: Side
    private var closed = false

    init(session: RelaySession, side: Side) {
        self.session = session
        self.side = side
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let n = unwrapInboundIn(data).readableBytes
        if side == .client { session.countSent(n) } else { session.countReceived(n) }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closed {
            closed = true
            session.sideClosed(side)
        }
        context.fireChannelInactive()
    }
}
