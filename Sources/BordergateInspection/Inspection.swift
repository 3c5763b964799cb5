import BordergateProxy
import BordergateRecording

/// The protocol handlers the proxy runs on inspected connections, and their registration.
///
/// The proxy (`BordergateProxy`) accepts, sniffs, asks for the verdict and dials; it knows no
/// protocol beyond recognising it. What is done with a connection's content lives here, one
/// folder per protocol, each a ``ProtocolHandler`` registered in ``handlers()``:
///
/// - `Raw/`: the bytes relayed as they are (every protocol without a handler of its own).
/// - `HTTP/`: HTTP/1.x request and response heads and bodies (masking, per-request verdicts);
///   NIOHTTP1 is imported here, never by the proxy.
/// - `TLS/`: terminating the tool's TLS and originating TLS upstream (NIOSSL), then handing the
///   plaintext to the handler of the protocol inside.
/// - `PostgreSQL/`: the frontend/backend protocol, framed by hand both ways: rows masked,
///   statements decided by guardrails (libpg_query, `CPgQuery`) and recorded normalised.
/// Recording goes through `BordergateRecording`'s `SessionRecorder`, after masking.
///
/// The composition root (`BordergateService`) passes ``handlers()`` to `TransparentProxy`.
public enum Inspection {
    /// Every handler, by the protocol it speaks. A new protocol is one `register` line here.
    public static func handlers(httpRules: @escaping HTTPInspector.Rules = { _ in nil },
                                tls: @escaping TLSInspector.Settings = { nil },
                                postgresRules: @escaping PostgreSQLInspector.Rules = { _ in nil },
                                approvals: SQLApprovals? = nil,
                                recorder: any SessionRecorder = DiscardingRecorder()) -> ProtocolHandlers {
        var handlers = ProtocolHandlers()
        let raw = RawRelay(recorder: recorder)
        let http = HTTPInspector(rules: httpRules, recorder: recorder)
        handlers.registerFallback(raw)
        handlers.register(http, for: [.http])
        handlers.register(TLSInspector(settings: tls, http: http, raw: raw), for: [.tls])
        handlers.register(PostgreSQLInspector(rules: postgresRules, recorder: recorder, raw: raw, approvals: approvals), for: [.postgresql])
        return handlers
    }
}
