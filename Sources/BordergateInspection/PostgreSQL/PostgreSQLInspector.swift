import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore

/// What a policy does with PostgreSQL content: resolved by the composition root from the plan's
/// references (the policy's name), so a reload's rules apply to new connections.
public struct PostgreSQLRules: Sendable {
    /// Masks DataRow values, COPY OUT rows and the texts of errors and notices; nil masks nothing.
    public var engine: MaskingEngine?
    /// `on-error: block`: a value that cannot be masked (a binary column of a type that could hold
    /// text, binary COPY) ends the connection after an ErrorResponse; `pass` relays it and notes it.
    public var blockOnError: Bool
    public var guardrails: SQLGuardrails?

    public init(engine: MaskingEngine?, blockOnError: Bool, guardrails: SQLGuardrails?) {
        self.engine = engine
        self.blockOnError = blockOnError
        self.guardrails = guardrails
    }
}

/// PostgreSQL (protocol 3) through the proxy: every message framed both ways
/// (``PGMessageDecoder``), rows masked as they stream, statements decided by the policy's
/// guardrails on PostgreSQL's own parse tree and recorded normalised, one session per connection.
///
/// TLS: an SSLRequest is answered `N`, so a client whose `sslmode` allows it (`prefer`, psql's
/// default) goes on in plaintext, where it can be inspected; one that requires TLS gives up,
/// which is fail closed. Each such answer is a `tls` event.
public struct PostgreSQLInspector: ProtocolHandler {
    public typealias Rules = @Sendable (MaskingRulesReference) -> PostgreSQLRules?

    let rules: Rules
    let recorder: any SessionRecorder
    /// For plans that ask for nothing but the relay: the bytes go as they are.
    let raw: RawRelay
    /// Shared by every connection this handler runs.
    let cancelKeys = PGCancelKeys()
    /// Where `review` rules hold statements (the daemon's control server answers them).
    let approvals: SQLApprovals?

    public init(rules: @escaping Rules, recorder: any SessionRecorder, raw: RawRelay, approvals: SQLApprovals?) {
        self.approvals = approvals
        self.rules = rules
        self.recorder = recorder
        self.raw = raw
    }

    public struct Value: Sendable {
        let connection: InspectedConnection
        let relay: PostgreSQLRelay?
        let raw: RawRelay.Value?
    }

    /// A plan that intercepts TLS is carried out by keeping TLS off (the SSLRequest is answered `N`).
    public func supports(_ plan: InspectionPlan) -> Bool {
        plan.protocol == nil || plan.protocol == .postgresql
    }

    public func setup(connection: InspectedConnection, logger: Logger) throws -> Value {
        let plan = connection.plan
        if plan.isOpaque {
            return Value(connection: connection, relay: nil, raw: try raw.setup(connection: connection, logger: logger))
        }
        var resolved = PostgreSQLRules(engine: nil, blockOnError: true, guardrails: nil)
        for reference in [plan.masking, plan.sql].compactMap({ $0 }) {
            // Fail closed: the policy that asked for masking or guardrails is gone (a reload removed it).
            guard let found = rules(reference) else {
                throw ProxyError("policy \(reference.name) is no longer configured, so its PostgreSQL rules are unknown")
            }
            if plan.masking == reference {
                resolved.engine = found.engine
                resolved.blockOnError = found.blockOnError
            }
            if plan.sql == reference { resolved.guardrails = found.guardrails }
        }
        if plan.masking != nil, resolved.engine == nil {
            throw ProxyError("policy \(plan.masking!.name) masks, but its masking rules are unknown")
        }
        if plan.sql != nil, resolved.guardrails == nil {
            throw ProxyError("policy \(plan.sql!.name) has SQL guardrails, but they are unknown")
        }
        try connection.addAccounting()
        let conn = connection.connection
        let recording = recorder.open(SessionStart(
            id: conn.connectionID, startedAt: conn.connectedAt, process: conn.process, destination: conn.destination,
            policy: conn.policy, protocol: .postgresql, content: plan.record))
        let relay = PostgreSQLRelay(connection: connection, rules: resolved, recording: recording,
                                    recordContent: plan.record, cancelKeys: cancelKeys, approvals: approvals,
                                    logger: logger)
        try connection.client.pipeline.syncOperations.addHandler(ByteToMessageHandler(PGMessageDecoder(frontend: true)))
        try connection.client.pipeline.syncOperations.addHandler(relay.clientSide)
        try connection.upstream.pipeline.syncOperations.addHandler(ByteToMessageHandler(PGMessageDecoder(frontend: false)))
        try connection.upstream.pipeline.syncOperations.addHandler(relay.upstreamSide)
        return Value(connection: connection, relay: relay, raw: nil)
    }

    public func handle(value: Value, logger: Logger) async {
        if let r = value.raw { return await raw.handle(value: r, logger: logger) }
        guard let relay = value.relay else { return }
        try? await value.connection.client.closeFuture.get()
        try? await value.connection.upstream.closeFuture.get()
        try? await value.connection.client.eventLoop.submit { relay.finishRecording() }.get()
        relay.recording.close(SessionEnd(endedAt: Date(), bytes: value.connection.bytes, ending: nil))
    }
}
