import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Answering the tool itself: a request refused in its turn, a 502 for what cannot be relayed,
/// a 400 for a request that is not HTTP, and a server that broke HTTP.
extension HTTPRelay {
    /// The verdict of a request that is let through but would have been refused (audit mode).
    func publishVerdict(_ verdict: ProxyVerdict, for head: HTTPRequestHead) {
        let c = connection.connection
        connection.publish(AuditEvent(
            type: .connect, verdict: verdict.verdict, reason: verdict.reason, process: c.process, destination: verdict.destination,
            protocol: .http, policy: verdict.policy, rule: verdict.rule, connection: c.connectionID,
            message: "request \(head.method) \(Self.path(of: head.uri)) on a kept-alive connection"))
    }


    func refuse(_ head: HTTPRequestHead, verdict: ProxyVerdict) {
        let c = connection.connection
        connection.publish(AuditEvent(
            type: .connect, verdict: .deny, reason: verdict.reason, process: c.process, destination: verdict.destination,
            protocol: .http, policy: verdict.policy, rule: verdict.rule, connection: c.connectionID,
            message: "request \(head.method) \(Self.path(of: head.uri)) refused"))
        refuse(head, reason: verdict.reason, published: true)
    }

    /// Refuses a request in its turn: a 403 (or `status`) once the answers before it are sent.
    func refuse(_ head: HTTPRequestHead, reason: String, status: HTTPResponseStatus = .forbidden, published: Bool = false) {
        let c = connection.connection
        if !published {
            connection.publish(AuditEvent(
                type: .connect, verdict: .deny, reason: reason, process: c.process, destination: c.destination,
                protocol: .http, policy: c.policy, connection: c.connectionID,
                message: "request \(head.method) \(Self.path(of: head.uri)) refused"))
        }
        let exchange = Exchange(head: head, recordBody: false, bodyCap: 0)
        exchange.recordedTarget = recordedTarget(head.uri, into: exchange)
        exchange.requestHeaders = recordedRequestHeaders(head.headers, into: exchange)
        exchange.status = Int(status.code)
        exchange.note = "refused: \(reason)"
        refusalStatus = status
        refusal = (head, reason)
        if pending.isEmpty {
            recordRefused(exchange)
            answerRefusal(head, reason: reason)
        } else {
            pendingRefused = exchange
        }
    }


    func answerRefusal(_ head: HTTPRequestHead, reason: String) {
        if let refused = pendingRefused {
            pendingRefused = nil
            recordRefused(refused)
        }
        answer(refusalStatus, reason: reason, version: head.version)
    }

    func recordRefused(_ exchange: Exchange) {
        exchange.respondedAt = Date()
        finishExchange(exchange, pop: false)
    }

    /// Answers the tool itself and ends the connection.
    func answer(_ status: HTTPResponseStatus, reason: String, version: HTTPVersion) {
        let body = "bordergate: \(reason)\n"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "connection", value: "close")
        clientSide.write(.head(HTTPResponseHead(version: version, status: status, headers: headers)))
        clientSide.write(.body(.byteBuffer(client.allocator.buffer(string: body))))
        clientSide.write(.end(nil))
        clientSide.flush()
        finished = true
        closeClientOutput()
        upstream.close(promise: nil)
        // A tool that never closes its side does not keep the connection open.
        let client = self.client
        client.eventLoop.scheduleTask(in: .seconds(2)) { client.close(promise: nil) }
    }

    func answerError(_ status: HTTPResponseStatus, reason: String) {
        answer(status, reason: reason, version: pending.first?.version ?? .http1_1)
    }

    /// The server broke HTTP (a length that lies, bytes that do not parse): nothing more from it
    /// reaches the tool. A response already begun is cut off, so the tool's client sees an
    /// incomplete message rather than a wrong one.
    func brokenUpstream(_ why: String) {
        guard !finished else { return }
        let what = (response?.exchange ?? pending.first).map { " in the response to \($0.method) \(Self.path(of: $0.target))" } ?? ""
        connection.fail(end: .proxyError, error: "the server broke HTTP\(what): \(why); the tool's connection was cut off")
        if let state = response {
            state.exchange.note = "the server broke HTTP: \(why)"
            finishExchange(state.exchange)
            response = nil
            closeBoth()
        } else if !pending.isEmpty {
            answerError(.badGateway, reason: "the server broke HTTP: \(why)")
        } else {
            closeBoth()
        }
    }

    /// The tool broke HTTP: it gets a 400 and the connection ends.
    func brokenClient(_ why: String) {
        guard !finished else { return }
        connection.fail(end: .proxyError, error: "the tool's request broke HTTP: \(why)")
        if pending.isEmpty, response == nil {
            answer(.badRequest, reason: "the request is not valid HTTP: \(why)", version: .http1_1)
        } else {
            closeBoth()
        }
    }
}
