import BordergateAudit
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
/// Accepting, and relaying what needs no inspection, happen on the ``RelayEngine``'s threads; a
/// connection whose verdict waits for its first bytes (TLS SNI, HTTP Host) becomes a NIO channel.
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
    private let logger: Logger
    private let engine = NIOLockedValueBox<RelayEngine?>(nil)
    private let bound = NIOLockedValueBox(0)

    /// The port the proxy listens on: the configured one, or the one the kernel chose for port 0.
    public var port: Int { bound.withLockedValue { $0 } }

    public init(configuration: Configuration, group: EventLoopGroup, resolver: ConnectionResolver,
                sink: ProxyEventSink, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.resolver = resolver
        self.sink = sink
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
                throw ProxyError("cannot listen on \(host):\(port): \(error); choose another port with --proxy-port or BORDERGATE_PROXY_PORT")
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
        if let refusal = conn.refusal {
            counters.add(\.refused, 1)
            var refused = conn
            refused.reason = refusal
            publishConnect(refused, verdict: "deny")
            RelayWorker.reset(fd)
            return
        }
        if conn.decide == nil {
            publishConnect(conn, verdict: "redirect")
            worker.relay(client: fd, connection: conn)
            return
        }
        // The verdict needs the first bytes: from here on the connection is a NIO channel. It is
        // active from now (`exec` waits for active connections to end before it stops the proxy),
        // not only once relayed. Holds what the tool sends (and its EOF or close) while the verdict and the upstream dial
        // are pending: NIO delivers an early EOF's bytes even with autoRead off, and nothing else
        // would keep them.
        let held = InboundHold()
        counters.add(\.active, 1)
        ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(held) }
            }
            .withConnectedSocket(fd)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    inspect(conn, channel: channel, held: held)
                case .failure(let error):
                    logger.error("proxy: cannot take over a connection to inspect it: \(error)")
                    counters.add(\.active, 0, subtracting: 1)
                    sink.publish(RelaySession.closeEvent(connection: conn, sent: 0, received: 0, elapsed: .zero,
                                                         end: "proxy-error", error: "cannot inspect: \(error)"))
                }
            }
    }

    /// Reads the tool's first bytes (at most a head's worth, for a bounded time), asks for the
    /// verdict, and relays or refuses.
    private func inspect(_ conn: ProxiedConnection, channel: Channel, held: InboundHold) {
        guard let decide = conn.decide else { return }
        // A server-speaks-first protocol sends nothing: it gets no hostname.
        let once = NIOLockedValueBox(false)
        let timer = NIOLockedValueBox<Scheduled<Void>?>(nil)
        let finish: @Sendable (SniffedProtocol, Bool) -> Void = { [self] sniffed, sawBytes in
            guard once.withLockedValue({ done in defer { done = true }; return !done }) else { return }
            timer.withLockedValue { $0?.cancel() } // it holds the channel and the head until it fires
            let host: HostObservation
            switch sniffed {
            case .tls(let name?), .http(let name?, _, _): host = .name(name)
            case .tls(nil), .http(nil, _, _), .other: host = .none
            case .needMoreBytes: host = sawBytes ? .unreadable : .none // cut off mid-head, or silent
            case .malformed: host = .unreadable
            }
            let v = decide(host)
            var decided = conn
            decided.destination = v.destination
            decided.reason = v.reason
            decided.policy = v.policy
            decided.rule = v.rule
            if v.relay {
                relay(decided, verdict: v.verdict, channel: channel, held: held)
            } else {
                refuse(decided, sniffed: sniffed, channel: channel)
            }
        }
        // Scheduled before observing: what is already held may decide at once, and cancel it.
        let scheduled = channel.eventLoop.scheduleTask(in: configuration.sniffTimeout) {
            finish(held.seenSoFar.map { ProtocolSniffer.sniff($0.readableBytesView) } ?? .needMoreBytes,
                   (held.seenSoFar?.readableBytes ?? 0) > 0)
        }
        timer.withLockedValue { $0 = scheduled }
        held.observe { bytes, ended in
            let sniffed = ProtocolSniffer.sniff(bytes.readableBytesView)
            if case .needMoreBytes = sniffed, !ended, bytes.readableBytes < ProtocolSniffer.maximumHeadBytes {
                channel.read()
                return
            }
            finish(sniffed, bytes.readableBytes > 0)
        }
        channel.read()
    }

    private func publishConnect(_ conn: ProxiedConnection, verdict: String, protocol proto: String = "tcp") {
        sink.publish(AuditEvent(
            time: conn.connectedAt, type: .connect, verdict: verdict, reason: conn.reason,
            process: conn.process, destination: conn.destination, protocol: proto, policy: conn.policy,
            rule: conn.rule, connection: conn.connectionID))
    }

    /// Dials the original destination and relays both ways, through NIO (after an inspection).
    private func relay(_ conn: ProxiedConnection, verdict: String, channel: Channel, held: InboundHold) {
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
                    let (toolSide, upstreamSide) = GlueHandler.matchedPair(session: session)
                    do {
                        try upstream.pipeline.syncOperations.addHandler(upstreamSide)
                        try channel.pipeline.syncOperations.addHandler(toolSide)
                    } catch {
                        session.fail(end: "proxy-error", error: "\(error)")
                        session.sideClosed("client")
                        session.sideClosed("server")
                        channel.close(promise: nil)
                        upstream.close(promise: nil)
                        return
                    }
                    held.release()
                    // Reads were held off until both sides were glued; from here NIO reads
                    // whenever the glue asks (it asks only while the partner is writable).
                    try? channel.syncOptions?.setOption(.autoRead, value: true)
                    try? upstream.syncOptions?.setOption(.autoRead, value: true)
                case .failure(let error):
                    counters.add(\.upstreamFailures, 1)
                    session.fail(end: "upstream-failed", error: conn.dialFailure(Self.describe(error)))
                    session.sideClosed("server")
                    reset(channel)
                    channel.closeFuture.whenComplete { _ in session.sideClosed("client") }
                }
            }
    }

    /// Refuses in the protocol's own words: HTTP gets a 403 with the reason, TLS an alert, anything
    /// else a reset.
    private func refuse(_ conn: ProxiedConnection, sniffed: SniffedProtocol, channel: Channel) {
        counters.add(\.refused, 1)
        counters.add(\.active, 0, subtracting: 1) // its story ends with this event: no close follows
        publishConnect(conn, verdict: "deny", protocol: Self.protocolName(sniffed))
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

    static func protocolName(_ s: SniffedProtocol) -> String {
        switch s {
        case .tls: "tls"
        case .http: "http"
        default: "tcp"
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

/// Keeps inbound bytes, EOF and inactivity until ``release()``, then replays them in order to the
/// handlers after it and steps aside.
final class InboundHold: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable { // used on its channel's loop only
    typealias InboundIn = ByteBuffer
    private enum Held {
        case read(NIOAny)
        case readComplete
        case event(Any)
        case inactive
    }

    private var held: [Held] = []
    private var context: ChannelHandlerContext?
    private var observer: ((ByteBuffer, Bool) -> Void)?
    private var seen = ByteBuffer()
    private var ended = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Calls `body` with everything held so far, and whether the tool has stopped sending, after
    /// each read and at EOF, until ``release()``.
    func observe(_ body: @escaping (ByteBuffer, Bool) -> Void) { observer = body }

    /// What the observer has seen so far (nil when not observing).
    var seenSoFar: ByteBuffer? { observer == nil ? nil : seen }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        held.append(.read(data))
        if let observer {
            var b = unwrapInboundIn(data)
            seen.writeBuffer(&b)
            observer(seen, ended)
        }
    }
    func channelReadComplete(context: ChannelHandlerContext) { held.append(.readComplete) }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        held.append(.event(event))
        if let e = event as? ChannelEvent, case .inputClosed = e { noteEnd() }
    }
    func channelInactive(context: ChannelHandlerContext) {
        held.append(.inactive)
        noteEnd()
    }

    private func noteEnd() {
        guard !ended else { return }
        ended = true
        observer?(seen, true)
    }

    /// Replays what was held to the handlers added since, and removes itself.
    func release() {
        guard let context else { return }
        for h in held {
            switch h {
            case .read(let data): context.fireChannelRead(data)
            case .readComplete: context.fireChannelReadComplete()
            case .event(let e): context.fireUserInboundEventTriggered(e)
            case .inactive: context.fireChannelInactive()
            }
        }
        held.removeAll()
        observer = nil
        seen = ByteBuffer()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
