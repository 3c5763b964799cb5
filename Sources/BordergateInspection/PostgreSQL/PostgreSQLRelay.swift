import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore

/// The state of one PostgreSQL connection through the proxy, shared by the handler on the tool's
/// channel and the one on the upstream channel (both on one event loop, so no lock). This file:
/// the client's messages; `+Backend`: the server's; `+Recording`: statements into the session.
final class PostgreSQLRelay: @unchecked Sendable {
    let connection: InspectedConnection
    let rules: PostgreSQLRules
    let recording: any SessionRecording
    let recordContent: Bool
    let cancelKeys: PGCancelKeys
    /// Where a `review` rule holds statements; nil: nothing can answer, so they are refused.
    let approvals: SQLApprovals?
    let logger: Logger
    private(set) var clientSide: PGClientSide!
    private(set) var upstreamSide: PGUpstreamSide!
    var finished = false

    /// The transaction status of the last ReadyForQuery (`I`, `T`, `E`), for the ones the proxy writes.
    var transactionStatus = UInt8(ascii: "I")
    /// A guardrail refused a statement inside a transaction block: the client was told the block
    /// failed (`E`), the server was not. Until the client ends the block, the proxy answers like a
    /// failed block does, and turns a COMMIT into the ROLLBACK PostgreSQL would make of it.
    var failedLocally = false
    /// Messages forwarded that the server has not finished answering (each Query and Sync ends
    /// with a ReadyForQuery), and whether anything went since the last Sync. A refusal is answered
    /// by the proxy only when nothing is outstanding, so its answer cannot overtake the server's.
    var outstanding = 0
    var forwardedSinceSync = false
    /// After a refused Parse: the client's messages up to its Sync are dropped, as the server
    /// drops them after an error.
    var discardingUntilSync = false
    /// A statement a `review` rule holds, and the client's messages that came after it (the
    /// client's socket is not read meanwhile).
    var held: Hold?
    var heldQueue: [PGFrame] = []

    struct Hold {
        var id: String
        var frame: PGFrame
        /// The Parse's statement name; nil for a Query.
        var parseName: String?
        var texts: [String]
        var refusal: SQLAnalysis.Refusal
    }

    /// What each outstanding ReadyForQuery closes: results arrive in the order the client asked.
    var segments: [Segment] = [Segment()]
    /// The startup's parameters (user, database, application_name).
    var startup: [String: String]?
    var authenticated = false
    /// Prepared statements and portals, by name, for the recording and the result formats.
    var prepared: [String: String] = [:]
    var portals: [String: Portal] = [:]
    /// The current result's columns (from RowDescription) and formats (from the Bind that made it).
    var columns: [Column] = []
    var resultFormats: [Int]?
    var copyOut: CopyOut?

    struct Segment {
        var binds: [[Int]] = []
        var statements: [Pending] = []
    }

    struct Portal {
        var text: String
        var parameters: [String?]
    }

    struct Column {
        var name: String
        var typeOID: UInt32
        var format: Int
    }

    /// A COPY OUT in progress: its rows go through one masking stream (a row may come in pieces).
    struct CopyOut {
        var masker: MaskingStream?
    }

    /// A statement sent and not yet answered.
    struct Pending {
        var text: String
        var parameters: [String?] = []
        var startedAt = Date()
        var rows: UInt64 = 0
        var masked = MaskCounts()
        var note: String?
        /// The review rule that held it before it was approved.
        var guardrail: String?
    }

    init(connection: InspectedConnection, rules: PostgreSQLRules, recording: any SessionRecording, recordContent: Bool,
         cancelKeys: PGCancelKeys, approvals: SQLApprovals?, logger: Logger) {
        self.connection = connection
        self.cancelKeys = cancelKeys
        self.approvals = approvals
        self.rules = rules
        self.recording = recording
        self.recordContent = recordContent
        self.logger = logger
        clientSide = PGClientSide(relay: self)
        upstreamSide = PGUpstreamSide(relay: self)
    }

    var client: Channel { connection.client }
    var upstream: Channel { connection.upstream }
    var allocator: ByteBufferAllocator { client.allocator }

    /// The extended protocol's messages the server answers at the next Sync.
    static let extendedMessages: Set<UInt8> = [UInt8(ascii: "P"), UInt8(ascii: "B"), UInt8(ascii: "D"), UInt8(ascii: "E"), UInt8(ascii: "C")]
    static let sslRequestCode: UInt32 = 80_877_103
    static let gssEncRequestCode: UInt32 = 80_877_104
    static let cancelRequestCode: UInt32 = 80_877_102

    // MARK: the client's messages

    func fromClient(_ frame: PGFrame) throws {
        if held != nil {
            heldQueue.append(frame)
            return
        }
        guard let type = frame.type else { return try untyped(frame) }
        switch type {
        case UInt8(ascii: "Q"):
            var r = PGReader(frame.body, "a Query message")
            try query(r.cString(), frame: frame)
        case UInt8(ascii: "P"):
            var r = PGReader(frame.body, "a Parse message")
            let name = try r.cString()
            try parse(name: name, sql: r.cString(), frame: frame)
        case UInt8(ascii: "B"):
            guard !discardingUntilSync else { return }
            try bind(frame)
            forward(frame)
        case UInt8(ascii: "E"):
            guard !discardingUntilSync else { return }
            var r = PGReader(frame.body, "an Execute message")
            let portal = portals[try r.cString()]
            segments[segments.count - 1].statements.append(
                Pending(text: portal?.text ?? "-- unknown portal", parameters: portal?.parameters ?? []))
            forward(frame)
        case UInt8(ascii: "S"):
            if discardingUntilSync {
                // the refused Parse was answered already; its Sync is answered here, not by the server
                discardingUntilSync = false
                clientSide.write(PGMessages.readyForQuery(readyStatus(), allocator: allocator))
                return
            }
            forward(frame, endsSegment: true)
            forwardedSinceSync = false
        case UInt8(ascii: "D"), UInt8(ascii: "C"), UInt8(ascii: "H"):
            guard !discardingUntilSync else { return }
            forward(frame)
        case UInt8(ascii: "F"):
            // A fast-path function call (large objects): no statement a guardrail could read.
            if rules.guardrails != nil {
                try refuse(SQLAnalysis.Refusal(rule: "on-error", message: "a fast-path function call cannot be decided by the SQL guardrails"),
                           text: "-- fast-path function call", extended: false)
                return
            }
            forward(frame, endsSegment: true)
        default:
            // Terminate, authentication responses (password, SASL: never logged), COPY IN data.
            forward(frame)
        }
    }

    private func untyped(_ frame: PGFrame) throws {
        var r = PGReader(frame.body, "the client's first message")
        let code = try r.uint32()
        switch code {
        case Self.sslRequestCode, Self.gssEncRequestCode:
            // Answered here: TLS or GSSAPI encryption would hide what the policy must inspect.
            var no = allocator.buffer(capacity: 1)
            no.writeInteger(UInt8(ascii: "N"))
            clientSide.write(no)
            clientSide.flush()
            let what = code == Self.sslRequestCode ? "SSLRequest" : "GSSENCRequest"
            let c = connection.connection
            connection.publish(AuditEvent(
                type: .tls, process: c.process, destination: c.destination, protocol: .postgresql,
                policy: c.policy, connection: c.connectionID,
                message: "PostgreSQL \(what) answered N: the policy inspects this connection, so it goes on in plaintext if the client's sslmode allows it (prefer, allow, disable); a client that requires encryption ends it (fail closed)"))
        case Self.cancelRequestCode:
            // relayed: the server checks the key, and a cancel can only stop a statement
            let key = Array(r.buffer.readableBytesView)
            let target = cancelKeys.session(for: key)
            let now = Date()
            recording.append(.sql(SQLStatement(
                text: "-- cancel request" + (target.map { " for session \($0)" } ?? ""),
                outcome: target == nil ? "relayed; no session through this proxy holds that key" : "relayed",
                startedAt: now, finishedAt: now)))
            forward(frame)
        default:
            var params: [String: String] = [:]
            while r.remaining > 1 {
                let key = try r.cString()
                params[key] = try r.cString()
            }
            startup = params
            forward(frame)
        }
    }

    /// A simple Query: every statement in the string is decided; one refusal refuses the string
    /// (it runs as one implicit transaction, so nothing of it would have stayed anyway).
    func query(_ sql: String, frame: PGFrame) throws {
        let analysis = SQLAnalysis.analyse(sql, guardrails: rules.guardrails)
        let texts = analysis.parseError != nil ? [SQLAnalysis.unparsed(sql)] : analysis.statements.map(\.normalized)
        if failedLocally {
            if let tx = Self.endOfFailedBlock(analysis) {
                failedLocally = false
                if tx == "TRANS_STMT_ROLLBACK_TO" || tx == "TRANS_STMT_ROLLBACK" {
                    return forwardQuery(frame, texts: texts)
                }
                // COMMIT (or PREPARE TRANSACTION) of a failed block is a ROLLBACK
                var body = allocator.buffer(capacity: 10)
                body.writeString("ROLLBACK")
                body.writeInteger(UInt8(0))
                return forwardQuery(PGFrame(type: UInt8(ascii: "Q"), body: body), texts: ["ROLLBACK -- the client's COMMIT of a block a guardrail failed"])
            }
            return try refuse(SQLAnalysis.Refusal(rule: "aborted", message: "current transaction is aborted, commands ignored until end of transaction block"),
                              text: texts.joined(separator: "; "), extended: false, code: "25P02", guardrail: false)
        }
        if let refusal = analysis.refusal(undecidable: rules.guardrails?.blockUndecidable ?? false), rules.guardrails != nil {
            let refused = analysis.statements.first { $0.refusal == refusal }?.normalized ?? texts.joined(separator: "; ")
            if rules.guardrails!.audit {
                publishGuardrail(refusal, text: refused, verdict: .audit)
            } else if refusal.review, approvals != nil {
                return try hold(Hold(id: "", frame: frame, parseName: nil, texts: texts, refusal: refusal))
            } else {
                return try refuse(refusal, text: refused, extended: false)
            }
        }
        forwardQuery(frame, texts: texts)
    }

    func forwardQuery(_ frame: PGFrame, texts: [String], guardrail: String? = nil) {
        for text in texts { segments[segments.count - 1].statements.append(Pending(text: text, guardrail: guardrail)) }
        forward(frame, endsSegment: true)
    }

    func parse(name: String, sql: String, frame: PGFrame) throws {
        guard !discardingUntilSync else { return }
        let analysis = SQLAnalysis.analyse(sql, guardrails: rules.guardrails)
        let text = analysis.parseError != nil ? SQLAnalysis.unparsed(sql) : analysis.statements.map(\.normalized).joined(separator: "; ")
        if failedLocally {
            switch Self.endOfFailedBlock(analysis) {
            case "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO":
                failedLocally = false
            case .some:
                failedLocally = false
                // COMMIT (or PREPARE TRANSACTION) of a failed block is a ROLLBACK
                var body = allocator.buffer(capacity: name.utf8.count + 12)
                body.writeNullTerminated(name)
                body.writeNullTerminated("ROLLBACK")
                body.writeInteger(Int16(0))
                prepared[name] = "ROLLBACK -- the client's COMMIT of a block a guardrail failed"
                return forward(PGFrame(type: UInt8(ascii: "P"), body: body))
            case nil:
                return try refuse(SQLAnalysis.Refusal(rule: "aborted", message: "current transaction is aborted, commands ignored until end of transaction block"),
                                  text: text, extended: true, code: "25P02", guardrail: false)
            }
        }
        if rules.guardrails != nil, let refusal = analysis.refusal(undecidable: rules.guardrails!.blockUndecidable) {
            if rules.guardrails!.audit {
                publishGuardrail(refusal, text: text, verdict: .audit)
            } else if refusal.review, approvals != nil {
                return try hold(Hold(id: "", frame: frame, parseName: name, texts: [text], refusal: refusal))
            } else {
                return try refuse(refusal, text: text, extended: true)
            }
        }
        prepared[name] = text
        forward(frame)
    }

    /// The transaction statement that ends a failed block (alone in its string), if it is one.
    static func endOfFailedBlock(_ analysis: SQLAnalysis) -> String? {
        guard analysis.statements.count == 1, let tx = analysis.statements[0].transaction,
              ["TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO", "TRANS_STMT_PREPARE"].contains(tx) else { return nil }
        return tx
    }

    func bind(_ frame: PGFrame) throws {
        var r = PGReader(frame.body, "a Bind message")
        let portal = try r.cString()
        let statement = try r.cString()
        let formatCount = try r.count(minimumSize: 2)
        let formats = try (0..<formatCount).map { _ in try r.int16() }
        let parameterCount = try r.count(minimumSize: 4)
        var parameters: [String?] = []
        for i in 0..<parameterCount {
            let n = try r.int32()
            guard n >= 0 else {
                guard n == -1 else { throw PGProtocolError("a Bind message gives parameter \(i + 1) the length \(n)") }
                parameters.append(nil)
                continue
            }
            let value = try r.bytes(n)
            guard recordContent else { continue }
            let format = formats.count == 1 ? formats[0] : (i < formats.count ? formats[i] : 0)
            if format != 0 {
                parameters.append("-- binary, \(n) bytes")
            } else if let engine = rules.engine {
                parameters.append(String(decoding: engine.mask(Array(value.readableBytesView)).bytes, as: UTF8.self))
            } else {
                parameters.append(String(decoding: value.readableBytesView, as: UTF8.self))
            }
        }
        let resultCount = try r.count(minimumSize: 2)
        let results = try (0..<resultCount).map { _ in try r.int16() }
        guard r.remaining == 0 else { throw PGProtocolError("a Bind message has \(r.remaining) bytes after its last field") }
        portals[portal] = Portal(text: prepared[statement] ?? "-- unknown prepared statement", parameters: parameters)
        segments[segments.count - 1].binds.append(results)
    }

    /// Sends a client's message on, as it came.
    func forward(_ frame: PGFrame, endsSegment: Bool = false) {
        upstreamSide.write(frame.encoded(allocator: allocator))
        if endsSegment {
            outstanding += 1
            segments.append(Segment())
        } else if let t = frame.type, Self.extendedMessages.contains(t) {
            forwardedSinceSync = true
        }
    }

    /// The ReadyForQuery status the proxy answers with after its own ErrorResponse.
    func readyStatus() -> UInt8 {
        failedLocally || transactionStatus == UInt8(ascii: "E") ? UInt8(ascii: "E") : UInt8(ascii: "I")
    }

    /// Answers a refused statement with an ErrorResponse (SQLSTATE 42501 unless `code`), and the
    /// session goes on. When the server still owes answers to earlier messages, the refusal cannot
    /// be put in its place among them: the connection ends (fail closed) rather than answer out of order.
    func refuse(_ refusal: SQLAnalysis.Refusal, text: String, extended: Bool, code: String = "42501", guardrail: Bool = true) throws {
        if guardrail { publishGuardrail(refusal, text: text, verdict: .deny) }
        let now = Date()
        recording.append(.sql(SQLStatement(text: text, outcome: "ERROR \(code): \(refusal.message)",
                                           guardrail: guardrail ? refusal.rule : nil, startedAt: now, finishedAt: now)))
        if outstanding > 0 || forwardedSinceSync {
            throw PGProtocolError("a statement refused by the guardrail '\(refusal.rule)' came while the server still owed answers to earlier ones; the connection was ended rather than answer out of order")
        }
        clientSide.write(PGMessages.error(code: code, message: "bordergate: \(refusal.message)", allocator: allocator))
        if transactionStatus == UInt8(ascii: "T") { failedLocally = true }
        if extended {
            discardingUntilSync = true
        } else {
            clientSide.write(PGMessages.readyForQuery(readyStatus(), allocator: allocator))
        }
        clientSide.flush()
    }

    /// The `guardrail` event: the rule, why, and the statement normalised (never its constants).
    func publishGuardrail(_ refusal: SQLAnalysis.Refusal, text: String, verdict: Verdict, request: String? = nil) {
        let c = connection.connection
        var event = AuditEvent(
            type: .guardrail, verdict: verdict, reason: refusal.message, process: c.process, destination: c.destination,
            protocol: .postgresql, policy: c.policy, rule: refusal.rule, connection: c.connectionID, message: text)
        event.request = request
        connection.publish(event)
    }

    // MARK: the connection

    func flushBoth() {
        clientSide.flush()
        upstreamSide.flush()
    }

    /// One side broke the protocol (a length that lies, a count past its message): the connection
    /// ends, and its `close` event says why.
    func broken(by side: Side, _ why: String) {
        guard !finished else { return }
        connection.fail(end: .proxyError, error: "\(why); the PostgreSQL connection was ended")
        closeBoth()
    }

    /// Ends the connection after telling the tool why, in an ErrorResponse.
    func endWithError(_ why: String) {
        guard !finished else { return }
        clientSide.write(PGMessages.error(code: "42501", message: "bordergate: \(why)", severity: "FATAL", allocator: allocator))
        clientSide.flush()
        connection.fail(end: .proxyError, error: why)
        finished = true
        clientSide.closeOutputAfterWrites()
        upstream.close(promise: nil)
        let client = self.client
        client.eventLoop.scheduleTask(in: .seconds(2)) { client.close(promise: nil) }
    }

    func closeBoth() {
        finished = true
        client.close(promise: nil)
        upstream.close(promise: nil)
    }
}
