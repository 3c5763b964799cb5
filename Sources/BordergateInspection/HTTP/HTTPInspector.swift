import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// How a policy masks HTTP content: resolved by the composition root from the plan's
/// ``MaskingRulesReference`` (the policy's name), so a reload's new rules apply to new connections.
public struct HTTPMaskRules: Sendable {
    public var engine: MaskingEngine
    /// Header names (lowercased) masked whole: response headers on the wire, request headers in
    /// the recording only (the request reaches the destination as the tool sent it).
    public var headers: Set<String>
    /// `on-error: block`: a body that cannot be masked never reaches the tool (a 502 before the
    /// head, the connection cut after it). Otherwise it is relayed unmasked and the event says so.
    public var blockOnError: Bool

    public init(engine: MaskingEngine, headers: Set<String>, blockOnError: Bool) {
        self.engine = engine
        self.headers = headers
        self.blockOnError = blockOnError
    }
}

/// HTTP/1.x through the proxy: NIOHTTP1 frames requests and responses both ways; every request on
/// the connection is decided (a pipelined request for a forbidden `Host` is refused with a 403),
/// response bodies of textual types are masked as they stream (gzip and deflate decoded, the
/// framing rewritten to chunked), and every exchange goes to the session recording after masking.
public struct HTTPInspector: ProtocolHandler {
    public typealias Rules = @Sendable (MaskingRulesReference) -> HTTPMaskRules?

    let rules: Rules
    let recorder: any SessionRecorder
    /// Bytes of each body kept in memory for the recording (the rest is counted, not kept).
    let bodyCap: Int

    public init(rules: @escaping Rules, recorder: any SessionRecorder, bodyCap: Int = 1 << 20) {
        self.rules = rules
        self.recorder = recorder
        self.bodyCap = bodyCap
    }

    public struct Value: Sendable {
        let connection: InspectedConnection
        let recording: any SessionRecording
    }

    /// A plan that intercepts TLS is carried out for plaintext HTTP too: there is no TLS to intercept.
    public func supports(_ plan: InspectionPlan) -> Bool {
        plan.protocol == nil || plan.protocol == .http
    }

    public func setup(connection: InspectedConnection, logger: Logger) throws -> Value {
        try connection.addAccounting()
        return try addPipelines(connection: connection, serverName: nil, protocol: .http, logger: logger)
    }

    /// The HTTP handlers at the end of both pipelines, after the wire's accounting (and, inside
    /// TLS, after the TLS handlers). `serverName`: the SNI of an intercepted connection, which
    /// every request's Host must match (domain fronting is refused with a 421).
    func addPipelines(connection: InspectedConnection, serverName: String?, protocol wire: WireProtocol,
                      logger: Logger) throws -> Value {
        var mask: HTTPMaskRules?
        if let reference = connection.plan.masking {
            // Fail closed: the policy that asked for masking is gone (a reload removed it).
            guard let found = rules(reference) else {
                throw ProxyError("policy \(reference.name) is no longer configured, so its masking rules are unknown")
            }
            mask = found
        }
        let conn = connection.connection
        let recording = recorder.open(SessionStart(
            id: conn.connectionID, startedAt: conn.connectedAt, process: conn.process, destination: conn.destination,
            policy: conn.policy, protocol: wire, content: connection.plan.record))
        let relay = HTTPRelay(connection: connection, mask: mask, recording: recording,
                              recordContent: connection.plan.record, bodyCap: bodyCap, logger: logger)
        relay.serverName = serverName
        // The proxy frames nothing itself: what a response's headers say is what the tool gets,
        // unless the body is masked, and then the relay rewrites the framing.
        var encoder = HTTPResponseEncoder.Configuration()
        encoder.automaticallySetFramingHeaders = false
        // Built by hand rather than with configureHTTPServerPipeline, for a request decoder that
        // hands on what the tool sent after an upgrade request instead of dropping it.
        try connection.client.pipeline.syncOperations.addHandler(
            // bounded: after an upgrade request the decoder holds what follows until it leaves
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes), maximumBufferSize: 1 << 20))
        try connection.client.pipeline.syncOperations.addHandler(HTTPResponseEncoder(configuration: encoder))
        try connection.client.pipeline.syncOperations.addHandler(relay.clientSide)
        var requestEncoder = HTTPRequestEncoder.Configuration()
        requestEncoder.automaticallySetFramingHeaders = false
        try connection.upstream.pipeline.syncOperations.addHandler(HTTPRequestEncoder(configuration: requestEncoder))
        try connection.upstream.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward),
                                 maximumBufferSize: 1 << 20))
        try connection.upstream.pipeline.syncOperations.addHandler(relay.upstreamSide)
        return Value(connection: connection, recording: recording)
    }

    public func handle(value: Value, logger: Logger) async {
        try? await value.connection.client.closeFuture.get()
        try? await value.connection.upstream.closeFuture.get()
        value.recording.close(SessionEnd(endedAt: Date(), bytes: value.connection.bytes, ending: nil))
    }
}
