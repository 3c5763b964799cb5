import BordergateAudit
import BordergatePolicy
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// Serves `GET /metrics` (Prometheus text format 0.0.4) on the configured loopback address; any
/// other path is a 404, any other method a 405. One event loop: a scrape every few seconds.
final class MetricsServer: Sendable {
    let config: MetricsConfig
    let metrics: DaemonMetrics
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = NIOLockedValueBox<Channel?>(nil)

    init(config: MetricsConfig, metrics: DaemonMetrics) {
        self.config = config
        self.metrics = metrics
    }

    func start() async throws {
        let metrics = self.metrics
        let ch = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(MetricsHandler(metrics: metrics))
                }
            }
            .bind(host: config.host, port: config.port).get()
        channel.withLockedValue { $0 = ch }
    }

    func stop() async {
        let ch = channel.withLockedValue { c -> Channel? in defer { c = nil }; return c }
        try? await ch?.close()
        try? await group.shutdownGracefully()
    }
}

private final class MetricsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let metrics: DaemonMetrics
    private var head: HTTPRequestHead?

    init(metrics: DaemonMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            let path = h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri
            let (status, type, body): (HTTPResponseStatus, String, [UInt8])
            if path != "/metrics" {
                (status, type, body) = (.notFound, "text/plain; charset=utf-8", Array("not found; metrics are at /metrics\n".utf8))
            } else if h.method != .GET && h.method != .HEAD {
                (status, type, body) = (.methodNotAllowed, "text/plain; charset=utf-8", Array("GET /metrics\n".utf8))
            } else {
                (status, type, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: String(body.count))
            if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
            if h.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
            }
            let keepAlive = h.isKeepAlive
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { channel.close(promise: nil) }
            }
        }
    }
}

/// `/metrics` as a service of the daemon: counts the audit events from a hub subscription and
/// serves the page until shutdown. A metrics address that cannot be bound stops the daemon's
/// start (the operator asked for it), said in one line.
struct MetricsService: Service {
    let server: MetricsServer
    let hub: AuditHub
    let logger: Logger

    func run() async throws {
        do {
            try await server.start()
        } catch {
            throw ServiceError("cannot serve metrics on \(server.config.listen): \(error); change metrics.listen in the config or stop what listens there")
        }
        logger.info("metrics on http://\(server.config.listen)/metrics")
        let subscription = hub.subscribe(capacity: 65536)
        let metrics = server.metrics
        await cancelWhenGracefulShutdown {
            for await item in subscription.items {
                switch item {
                case .event(let e, _): metrics.count(e)
                case .missed(let n): metrics.missed(n)
                }
            }
        }
        subscription.cancel()
        await server.stop()
    }
}
