import BordergateAudit
import CBordergateSys
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The in-host proxy that redirected connections arrive at.
///
/// It listens on 127.0.0.1 and ::1. For each accepted connection it asks the ``ConnectionResolver``
/// where the tool meant to go and who the tool is, reports a `connect` event, dials the original
/// destination, and relays both ways. A connection it cannot place, or whose upstream dial fails, is
/// reset, so the tool sees the failure at once, and the event says why.
///
/// Accept → route → engine: accepting, and relaying what needs no inspection, happen on the
/// ``RelayEngine``'s threads (the ``ConnectionRoute`` `splice`); a connection whose verdict waits
/// for its first bytes (TLS SNI, HTTP Host), or whose ``InspectionPlan`` asks for more than its
/// bytes relayed, becomes a NIO channel: a ``SniffingHandler`` reads the first bytes, the verdict
/// is asked, and the ``ProtocolHandler`` registered for the protocol runs it.
public final class TransparentProxy: Sendable {
    public struct Configuration: Sendable {
        public var port: Int
        public var hosts: [String]
        public var connectTimeout: TimeAmount
        public var backlog: Int32
        /// SO_MARK for upstream sockets, so the guard can tell the proxy's own dials, and for the
        /// listeners, so it redirects only to them (needs CAP_NET_ADMIN); nil sets none.
        public var upstreamMark: UInt32?
        /// How long a verdict that needs the hostname waits for the tool's first bytes.
        public var sniffTimeout: TimeAmount = .seconds(3)
        /// Accept-and-relay threads (each waits on every listener).
        public var relayThreads = System.coreCount

        public init(port: Int, hosts: [String] = ["127.0.0.1", "::1"], connectTimeout: TimeAmount = .seconds(10),
                    backlog: Int32 = 4096, upstreamMark: UInt32? = nil) {
            self.port = port
            self.hosts = hosts
            self.connectTimeout = connectTimeout
            self.backlog = backlog
            self.upstreamMark = upstreamMark
        }
    }

    public let configuration: Configuration
    public let counters = ProxyCounters()
    private let group: EventLoopGroup
    private let resolver: ConnectionResolver
    private let sink: ProxyEventSink
    private let handlers: ProtocolHandlers
    private let logger: Logger
    private let engine = NIOLockedValueBox<RelayEngine?>(nil)
    private let bound = NIOLockedValueBox(0)

    /// The port the proxy listens on: the configured one, or the one the kernel chose for port 0.
    public var port: Int { bound.withLockedValue { $0 } }

    /// `handlers` run the connections that are inspected (see ``ProtocolHandler``).
    public init(configuration: Configuration, group: EventLoopGroup, resolver: ConnectionResolver,
                sink: ProxyEventSink, handlers: ProtocolHandlers, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.resolver = resolver
        self.sink = sink
        self.handlers = handlers
        self.logger = logger
    }

    /// Binds every listening address and starts accepting. IPv6 may be missing on a host; IPv4
    /// may not. Returns the addresses actually bound.
    @discardableResult
    public func start() async throws -> [String] {
        var addresses: [String] = []
        var listeners: [Int32] = []
        var port = configuration.port
        for host in configuration.hosts {
            do {
                let (fd, boundPort) = try RelayEngine.listen(host: host, port: port, backlog: configuration.backlog,
                                                              mark: configuration.upstreamMark)
                listeners.append(fd)
                // with port 0 the first bind picks the port; the other addresses reuse it
                port = boundPort
                addresses.append(host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
            } catch {
                if host.contains(":") {
                    logger.warning("proxy: cannot listen on [\(host)]:\(port) (\(error)); IPv6 connects from guarded cgroups will be refused")
                    continue
                }
                for fd in listeners { close(fd) }
                throw ProxyError("cannot listen on \(host):\(port): \(error); another process holds it: choose another proxy port")
            }
        }
        let context = RelayContext(sink: sink, counters: counters, logger: logger, upstreamMark: configuration.upstreamMark,
                                   connectTimeoutNanos: UInt64(max(1, configuration.connectTimeout.nanoseconds)))
        let engine: RelayEngine
        do {
            engine = try RelayEngine(listeners: listeners, threads: configuration.relayThreads, context: context) { [self] fd, peer, worker in
                accepted(fd, peer: peer, worker: worker)
            }
        } catch {
            for fd in listeners { close(fd) }
            throw error
        }
        self.engine.withLockedValue { $0 = engine }
        bound.withLockedValue { $0 = port }
        engine.start()
        return addresses
    }

    public func stop() async {
        await engine.withLockedValue { e in defer { e = nil }; return e }?.stop()
    }

    /// An accepted connection, on the relay thread that accepted it.
    private func accepted(_ fd: Int32, peer: SocketAddress?, worker: RelayWorker) {
        counters.add(\.accepted, 1)
        guard let peer, let conn = resolver.resolve(client: peer) else {
            // Not a redirected connection (someone dialled the proxy port directly), or its kernel
            // record is gone (evicted, or claimed by an earlier connection from the same port, which
            // reported both): refuse rather than guess where it meant to go.
            counters.add(\.unmapped, 1)
            logger.notice("proxy: refused a connection from \(peer.map { "\($0.ipAddress ?? "?") port \($0.port ?? 0)" } ?? "?"): no kernel record for it (the guard did not redirect it, or an earlier connection from that port claimed the record; see its audit event)")
            RelayWorker.reset(fd)
            return
        }
        switch ConnectionRoute(conn) {
        case .refuse(let conn, let refusal):
            counters.add(\.refused, 1)
            var refused = conn
            refused.reason = refusal
            publishConnect(refused, verdict: .deny)
            RelayWorker.reset(fd)
        case .splice(let route):
            publishConnect(conn, verdict: .redirect)
            worker.relay(client: fd, route: route)
        case .inspect(let conn):
            inspect(fd, conn)
        }
    }

    /// The connection needs its first bytes (for the verdict, or for its protocol handler): from
    /// here on it is a NIO channel. It is active from now (`exec` waits for active connections to
    /// end before it stops the proxy), not only once relayed.
    private func inspect(_ fd: Int32, _ conn: ProxiedConnection) {
        counters.add(\.active, 1)
        ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: false)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SniffingHandler(timeout: configuration.sniffTimeout) { outcome, channel in
                        self.decided(conn, outcome: outcome, channel: channel)
                    })
                }
            }
            .withConnectedSocket(fd)
            .whenFailure { [self] error in
                logger.error("proxy: cannot take over a connection to inspect it: \(error)")
                counters.add(\.active, 0, subtracting: 1)
                sink.publish(RelaySession.closeEvent(connection: conn, sent: 0, received: 0, elapsed: .zero,
                                                     end: .proxyError, error: "cannot inspect: \(error)"))
            }
    }

    /// What the first bytes said is in: asks for the verdict (when it waited for the hostname),
    /// picks the protocol handler, and relays or refuses. The future says what becomes of the
    /// bytes the sniffing handler holds.
    private func decided(_ conn: ProxiedConnection, outcome: SniffOutcome, channel: Channel) -> EventLoopFuture<SniffDisposition> {
        var decided = conn
        var verdict: Verdict = .redirect
        if let decide = conn.decide {
            let v = decide(outcome.host)
            decided.destination = v.destination
            decided.reason = v.reason
            decided.policy = v.policy
            decided.rule = v.rule
            guard v.relay else {
                refuse(decided, sniffed: outcome.sniffed, channel: channel)
                return channel.eventLoop.makeSucceededFuture(.discard)
            }
            verdict = v.verdict
        }
        let spoken = ProxyProtocol(outcome.sniffed)
        var chosen = handlers.handler(for: conn.inspection, speaking: spoken)
        if chosen == nil, conn.inspection.uninspectable == .relay, let raw = handlers.handler(for: .none, speaking: spoken) {
            // The policy lets what cannot be inspected through as it is; the event says so.
            chosen = raw
            decided.reason += "; \(spoken) content not inspected (no handler for it)"
        }
        guard let handler = chosen else {
            // Fail closed: relaying it uninspected would skip what its plan asks for.
            logger.error("proxy: no protocol handler can carry out the inspection a \(spoken) connection needs (\(conn.inspection)); refused")
            decided.reason = "policy \(decided.policy) inspects content, and \(spoken) connections cannot be inspected yet (on-error: block)"
            refuse(decided, sniffed: outcome.sniffed, channel: channel)
            return channel.eventLoop.makeSucceededFuture(.discard)
        }
        let promise = channel.eventLoop.makePromise(of: SniffDisposition.self)
        relay(decided, verdict: verdict, sniffed: outcome.sniffed, handler: handler, channel: channel, held: promise)
        return promise.futureResult
    }

    private func publishConnect(_ conn: ProxiedConnection, verdict: Verdict, protocol proto: ProxyProtocol = .tcp) {
        sink.publish(AuditEvent(
            time: conn.connectedAt, type: .connect, verdict: verdict, reason: conn.reason,
            process: conn.process, destination: conn.destination, protocol: WireProtocol(proto), policy: conn.policy,
            rule: conn.rule, connection: conn.connectionID))
    }

    /// Dials the original destination and runs `handler` on both channels (after an inspection);
    /// `held` is told when the sniffed bytes may be replayed through the handler's pipeline.
    private func relay(_ conn: ProxiedConnection, verdict: Verdict, sniffed: SniffedProtocol, handler: any ProtocolHandler,
                       channel: Channel, held: EventLoopPromise<SniffDisposition>) {
        publishConnect(conn, verdict: verdict)
        let session = RelaySession(connection: conn, sink: sink, counters: counters)

        var bootstrap = ClientBootstrap(group: channel.eventLoop)
        if let mark = configuration.upstreamMark {
            bootstrap = bootstrap.channelOption(.socketOption(NIOBSDSocket.Option(rawValue: CInt(SO_MARK))), value: Int(mark))
        }
        bootstrap
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(configuration.connectTimeout)
            .connect(to: conn.target)
            .whenComplete { [self] result in
                switch result {
                case .success(let upstream):
                    let inspected = InspectedConnection(client: channel, upstream: upstream, connection: conn,
                                                        plan: conn.inspection, sniffed: sniffed, session: session)
                    do {
                        try run(handler, on: inspected)
                    } catch {
                        held.succeed(.discard)
                        session.fail(end: .proxyError, error: "\(error)")
                        session.sideClosed(.client)
                        session.sideClosed(.server)
                        channel.close(promise: nil)
                        upstream.close(promise: nil)
                        return
                    }
                    held.succeed(.replay)
                    // Reads were held off until both pipelines were built; from here NIO reads
                    // whenever the handlers ask (the raw relay asks only while the partner is writable).
                    try? channel.syncOptions?.setOption(.autoRead, value: true)
                    try? upstream.syncOptions?.setOption(.autoRead, value: true)
                case .failure(let error):
                    held.succeed(.discard)
                    counters.add(\.upstreamFailures, 1)
                    session.fail(end: .upstreamFailed, error: conn.dialFailure(Self.describe(error)))
                    session.sideClosed(.server)
                    reset(channel)
                    channel.closeFuture.whenComplete { _ in session.sideClosed(.client) }
                }
            }
    }

    /// Builds the handler's pipelines now, on the connection's loop, and runs it in a task.
    private func run<H: ProtocolHandler>(_ handler: H, on connection: InspectedConnection) throws {
        let value = try handler.setup(connection: connection, logger: logger)
        Task { [logger] in await handler.handle(value: value, logger: logger) }
    }

    /// Refuses in the protocol's own words: HTTP gets a 403 with the reason, TLS an alert, anything
    /// else a reset.
    private func refuse(_ conn: ProxiedConnection, sniffed: SniffedProtocol, channel: Channel) {
        counters.add(\.refused, 1)
        counters.add(\.active, 0, subtracting: 1) // its story ends with this event: no close follows
        publishConnect(conn, verdict: .deny, protocol: ProxyProtocol(sniffed))
        let words: [UInt8]
        switch sniffed {
        case .http: words = ProtocolRefusal.httpForbidden(reason: conn.reason)
        case .tls: words = ProtocolRefusal.tlsAlert()
        default:
            reset(channel)
            return
        }
        // Nothing more is read (the held head is all that is ever buffered); the tool gets the answer
        // and an EOF, and the connection is closed for good soon after.
        channel.writeAndFlush(ByteBuffer(bytes: words)).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
    }

    /// Closes with an RST (SO_LINGER 0), so the tool sees "connection reset" rather than EOF.
    private func reset(_ channel: Channel) {
        guard let provider = channel as? SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? IOError {
            return dialErrorText(e.errnoCode)
        }
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
            return describe(first.error)
        }
        if error is ChannelError, case ChannelError.connectTimeout = error {
            return "timed out"
        }
        return "\(error)"
    }
}

public struct ProxyError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
