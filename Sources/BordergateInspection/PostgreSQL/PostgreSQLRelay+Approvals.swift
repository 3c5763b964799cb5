import BordergateAudit
import BordergateProxy
import BordergateRecording
import Foundation
import NIOCore

/// Statements a `review` rule holds: the client waits (its own statement_timeout still applies)
/// until `bordergate approve ID` sends the statement on, or `reject`, or `review-timeout`
/// refuses it like a deny rule would.
extension PostgreSQLRelay {
    func hold(_ hold: Hold) throws {
        guard let approvals, let guardrails = rules.guardrails else { return }
        if outstanding > 0 || forwardedSinceSync {
            throw PGProtocolError("a statement held by the guardrail '\(hold.refusal.rule)' came while the server still owed answers to earlier ones; the connection was ended rather than answer out of order")
        }
        var h = hold
        h.id = AuditEvent.newID()
        held = h
        let c = connection.connection
        let now = Date()
        let text = h.texts.joined(separator: "; ")
        let timeout = guardrails.reviewTimeout
        publishGuardrail(h.refusal, text: text, verdict: .other("review"), request: h.id)
        let loop = client.eventLoop
        let id = h.id
        approvals.hold(SQLApprovals.Held(id: id, connection: c.connectionID, policy: c.policy, rule: h.refusal.rule,
                                         statement: text, heldAt: now, expires: now.addingTimeInterval(timeout))) { [self] answer in
            loop.execute { self.released(id, answer) }
        }
        loop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { approvals.answer(id, .timedOut) }
    }

    func released(_ id: String, _ answer: SQLApprovals.Answer) {
        guard !finished, let h = held, h.id == id else { return }
        held = nil
        let text = h.texts.joined(separator: "; ")
        do {
            switch answer {
            case .approved(let reason):
                var approved = h.refusal
                approved.message = "approved" + (reason.map { ": \($0)" } ?? "")
                publishGuardrail(approved, text: text, verdict: .pass, request: id)
                if let name = h.parseName {
                    prepared[name] = text
                    forward(h.frame)
                } else {
                    forwardQuery(h.frame, texts: h.texts, guardrail: h.refusal.rule)
                }
            case .rejected(let reason):
                var r = h.refusal
                r.message += ", and the review rejected it" + (reason.map { ": \($0)" } ?? "")
                try refuse(r, text: text, extended: h.parseName != nil)
            case .timedOut:
                var r = h.refusal
                r.message += ", and nobody approved it within \(Int(rules.guardrails?.reviewTimeout ?? 0)) s"
                try refuse(r, text: text, extended: h.parseName != nil)
            }
            // what the client sent meanwhile, in order (it may be held again)
            while held == nil, !heldQueue.isEmpty, !finished {
                try fromClient(heldQueue.removeFirst())
            }
        } catch {
            broken(by: .client, "\(error)")
        }
        flushBoth()
        if held == nil { clientSide.partnerWritable() }
    }

    /// The connection ended with a statement held: nobody can be answered any more.
    func forgetHeld() {
        guard let h = held else { return }
        approvals?.forget(h.id)
        held = nil
        let now = Date()
        recording.append(.sql(SQLStatement(text: h.texts.joined(separator: "; "), outcome: "held for review; the connection ended",
                                           guardrail: h.refusal.rule, startedAt: now, finishedAt: now)))
    }
}
