import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation

/// Statements into the session recording, normalised (constants replaced by `$n`), with their
/// rows, duration and outcome; a `mask` event for each statement whose results were masked.
extension PostgreSQLRelay {
    /// The startup as the transcript's first line, in psql's own words: `\connect DB USER`.
    func recordConnect(outcome: String) {
        guard let params = startup else { return }
        let user = params["user"] ?? "?"
        var text = "\\connect \(params["database"] ?? user) \(user)"
        if let app = params["application_name"], !app.isEmpty { text += " -- application_name=\(app)" }
        let now = Date()
        recording.append(.sql(SQLStatement(text: text, outcome: outcome, startedAt: connection.connection.connectedAt, finishedAt: now)))
        startup = nil
    }

    /// The oldest statement waiting for its result got it.
    func finishStatement(outcome: String) {
        guard !segments.isEmpty, !segments[0].statements.isEmpty else { return }
        let s = segments[0].statements.removeFirst()
        record(s, outcome: outcome)
    }

    /// A note on the statement whose result is arriving (what was not masked, and why).
    func noteStatement(_ note: String) {
        guard !segments.isEmpty, !segments[0].statements.isEmpty else { return }
        if segments[0].statements[0].note == nil { segments[0].statements[0].note = note }
    }

    /// A ReadyForQuery closes the oldest segment: what it still holds was never run (an error
    /// before it skips the rest of a query string or of a pipeline up to its Sync).
    func readyForQuery() {
        columns = []
        resultFormats = nil
        // the one after authentication answers nothing the client sent
        guard outstanding > 0, segments.count > 1 else { return }
        outstanding -= 1
        let closed = segments.removeFirst()
        for s in closed.statements { record(s, outcome: "not run: an earlier statement failed") }
    }

    /// At the end of the connection: statements that never got an answer.
    func finishRecording() {
        cancelKeys.remove(session: connection.connection.connectionID)
        forgetHeld()
        for segment in segments {
            for s in segment.statements { record(s, outcome: "no answer: the connection ended") }
        }
        segments = [Segment()]
        if startup != nil { recordConnect(outcome: "the connection ended before authentication") }
    }

    func record(_ s: Pending, outcome: String) {
        var rows = s.rows
        if rows == 0, let last = outcome.split(separator: " ").last, let n = UInt64(last),
           !outcome.hasPrefix("ERROR") { rows = n }
        let counts = Self.eventCounts(s.masked)
        recording.append(.sql(SQLStatement(
            text: s.note.map { "\(s.text) -- \($0)" } ?? s.text, parameters: recordContent ? s.parameters : [], rows: rows,
            outcome: outcome, guardrail: s.guardrail, startedAt: s.startedAt, finishedAt: Date(), masked: counts)))
        guard !counts.isEmpty else { return }
        let c = connection.connection
        var event = AuditEvent(type: .mask, process: c.process, destination: c.destination, protocol: .postgresql, policy: c.policy,
                               connection: c.connectionID, message: "\(s.text.prefix(200)) → \(outcome)")
        event.masked = counts
        connection.publish(event)
    }

    /// Counts as events and recordings name them: detectors by name, field rules as `field:NAME`.
    static func eventCounts(_ c: MaskCounts) -> [String: Int] {
        var counts: [String: Int] = c.detectors
        for (k, v) in c.fields { counts["field:\(k)", default: 0] += v }
        return counts
    }
}
