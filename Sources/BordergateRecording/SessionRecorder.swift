import BordergateAudit
import Foundation

/// The seam between the protocol handlers (`BordergateInspection`), which see conversations, and
/// the store that keeps them. A handler opens one ``SessionRecording`` per proxied connection,
/// appends what it saw (after masking: nothing unmasked may cross this seam when the plan masks),
/// and closes it; the recorder stores it and emits the `session` audit event with the digest.
///
/// Value types only, no NIO and no storage here, so a handler can be tested with
/// ``DiscardingRecorder`` and the store without a proxy.
public protocol SessionRecorder: Sendable {
    func open(_ start: SessionStart) -> any SessionRecording
}

/// One open session. Appends come from the connection's event loop, in order; `close` is called
/// once, after the last append.
public protocol SessionRecording: AnyObject, Sendable {
    func append(_ entry: SessionEntry)
    func close(_ end: SessionEnd)
}

/// What is known of a session when it opens.
public struct SessionStart: Sendable {
    /// The proxied connection's id: events' `connection`, and the session's id.
    public var id: String
    public var startedAt: Date
    public var process: AuditEvent.Process
    public var destination: AuditEvent.Destination
    public var policy: String
    public var `protocol`: WireProtocol
    /// The policy's `record: true`: keep content (masked). False: metadata only (sizes, timings,
    /// methods, statuses), which is always kept.
    public var content: Bool

    public init(id: String, startedAt: Date, process: AuditEvent.Process, destination: AuditEvent.Destination,
                policy: String, protocol: WireProtocol, content: Bool) {
        self.id = id
        self.startedAt = startedAt
        self.process = process
        self.destination = destination
        self.policy = policy
        self.protocol = `protocol`
        self.content = content
    }
}

/// One thing that happened inside a session.
public enum SessionEntry: Sendable {
    case http(HTTPExchange)
    case sql(SQLStatement)
}

public struct RecordedHeader: Sendable, Codable, Equatable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// One HTTP request and its response, as the tool saw them.
public struct HTTPExchange: Sendable {
    public var method: String
    public var target: String
    public var version: String
    /// nil: no response came (refused, upstream closed).
    public var status: Int?
    public var requestHeaders: [RecordedHeader]
    public var responseHeaders: [RecordedHeader]
    /// Bodies as the tool saw them (masked), up to the recorder's cap; empty when the session
    /// records metadata only.
    public var requestBody: [UInt8]
    public var responseBody: [UInt8]
    /// Body sizes on the wire, whatever was kept.
    public var requestBodyBytes: UInt64
    public var responseBodyBytes: UInt64
    /// A body was longer than what was kept.
    public var truncated: Bool
    public var startedAt: Date
    /// When the response head arrived; nil without a response.
    public var respondedAt: Date?
    public var finishedAt: Date
    /// Values masked, by detector or field rule (as in `mask` events); never a value.
    public var masked: [String: Int]
    /// Why something was not inspected or was refused ("binary body not masked",
    /// "upgraded to websocket: relayed unmasked", "refused: Host ... forbidden").
    public var note: String?

    public init(method: String, target: String, version: String = "HTTP/1.1", status: Int? = nil,
                requestHeaders: [RecordedHeader] = [], responseHeaders: [RecordedHeader] = [],
                requestBody: [UInt8] = [], responseBody: [UInt8] = [], requestBodyBytes: UInt64 = 0,
                responseBodyBytes: UInt64 = 0, truncated: Bool = false, startedAt: Date, respondedAt: Date? = nil,
                finishedAt: Date, masked: [String: Int] = [:], note: String? = nil) {
        self.method = method
        self.target = target
        self.version = version
        self.status = status
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
        self.requestBody = requestBody
        self.responseBody = responseBody
        self.requestBodyBytes = requestBodyBytes
        self.responseBodyBytes = responseBodyBytes
        self.truncated = truncated
        self.startedAt = startedAt
        self.respondedAt = respondedAt
        self.finishedAt = finishedAt
        self.masked = masked
        self.note = note
    }
}

/// One SQL statement and its outcome.
public struct SQLStatement: Sendable {
    /// Normalised: constants replaced by `$n`, as `pg_query_normalize` does.
    public var text: String
    /// Bound parameters (extended protocol), masked; nil for a NULL.
    public var parameters: [String?]
    public var rows: UInt64
    /// The command tag (`SELECT 3`) or the error (`ERROR 42501: ...`).
    public var outcome: String
    /// The guardrail that refused or held it, if one did.
    public var guardrail: String?
    public var startedAt: Date
    public var finishedAt: Date
    public var masked: [String: Int]

    public init(text: String, parameters: [String?] = [], rows: UInt64 = 0, outcome: String, guardrail: String? = nil,
                startedAt: Date, finishedAt: Date, masked: [String: Int] = [:]) {
        self.text = text
        self.parameters = parameters
        self.rows = rows
        self.outcome = outcome
        self.guardrail = guardrail
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.masked = masked
    }
}

/// How a session ended.
public struct SessionEnd: Sendable {
    public var endedAt: Date
    public var bytes: AuditEvent.Bytes
    public var ending: ConnectionEnding?

    public init(endedAt: Date, bytes: AuditEvent.Bytes, ending: ConnectionEnding?) {
        self.endedAt = endedAt
        self.bytes = bytes
        self.ending = ending
    }
}

/// Keeps nothing: for handler tests, and a daemon without a recording store.
public struct DiscardingRecorder: SessionRecorder {
    public init() {}
    public func open(_ start: SessionStart) -> any SessionRecording { Discarded() }

    private final class Discarded: SessionRecording {
        func append(_ entry: SessionEntry) {}
        func close(_ end: SessionEnd) {}
    }
}
