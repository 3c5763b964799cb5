import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// The state of one HTTP connection through the proxy, shared by the handler on the tool's
/// channel and the one on the upstream channel. Both channels run on one event loop (the proxy
/// dials upstream on the client's loop), so the state needs no lock; every entry point runs there.
final class HTTPRelay: @unchecked Sendable {
    let connection: InspectedConnection
    let mask: HTTPMaskRules?
    let recording: any SessionRecording
    let recordContent: Bool
    let bodyCap: Int
    let logger: Logger
    private(set) var clientSide: ClientSide!
    private(set) var upstreamSide: UpstreamSide!

    /// Requests sent upstream, oldest first, waiting for their responses.
    private var pending: [Exchange] = []
    /// The request whose body is arriving from the tool.
    private var sending: Exchange?
    /// The response arriving from upstream.
    private var response: ResponseState?
    /// A request was refused: nothing more is sent upstream, and the refusal is answered once the
    /// responses before it are.
    private var refusal: (head: HTTPRequestHead, reason: String)?
    private var clientInputClosed = false
    private var finished = false

    init(connection: InspectedConnection, mask: HTTPMaskRules?, recording: any SessionRecording, recordContent: Bool,
         bodyCap: Int, logger: Logger) {
        self.connection = connection
        self.mask = mask
        self.recording = recording
        self.recordContent = recordContent
        self.bodyCap = bodyCap
        self.logger = logger
        clientSide = ClientSide(relay: self)
        upstreamSide = UpstreamSide(relay: self)
    }

    var client: Channel { connection.client }
    var upstream: Channel { connection.upstream }

    // MARK: requests, from the tool

    func requestHead(_ head: HTTPRequestHead) {
        guard refusal == nil, !finished else { return }
        // Every request is decided, not only the first: a later one may name another host.
        if let decide = connection.connection.decide {
            let verdict = decide(Self.host(of: head).map(HostObservation.name) ?? .none)
            if !verdict.relay {
                refuse(head, verdict: verdict)
                return
            }
        }
        let exchange = Exchange(head: head, recordBody: recordContent, bodyCap: bodyCap)
        exchange.requestHeaders = recordedRequestHeaders(head.headers, into: exchange)
        if recordContent, let mask { exchange.requestMasker = mask.engine.makeStream() }
        pending.append(exchange)
        sending = exchange
        upstreamSide.write(.head(head))
    }

    func requestBody(_ body: ByteBuffer) {
        guard refusal == nil, !finished, let exchange = sending else { return }
        exchange.requestBodyBytes += UInt64(body.readableBytes)
        if exchange.recordBody {
            if exchange.requestMasker != nil {
                exchange.keepRequest(exchange.requestMasker!.feed(body.readableBytesView))
            } else {
                exchange.keepRequest(Array(body.readableBytesView))
            }
        }
        upstreamSide.write(.body(.byteBuffer(body)))
    }

    func requestEnd(_ trailers: HTTPHeaders?) {
        guard refusal == nil, !finished, let exchange = sending else { return }
        if exchange.requestMasker != nil {
            exchange.keepRequest(exchange.requestMasker!.finish())
            exchange.masked.add(exchange.requestMasker!.counts)
            exchange.requestMasker = nil
        }
        sending = nil
        upstreamSide.write(.end(trailers))
    }

    func requestsFlushed() {
        upstreamSide.flush()
    }

    /// The tool sent EOF: pass it on once what it sent is written.
    func clientEOF() {
        clientInputClosed = true
        upstreamSide.closeOutputAfterWrites()
    }

    // MARK: responses, from upstream

    func responseHead(_ head: HTTPResponseHead) {
        guard !finished else { return }
        if (100..<200).contains(head.status.code), head.status != .switchingProtocols {
            clientSide.write(.head(head)) // 100 Continue, 103 Early Hints: relayed as they are
            return
        }
        guard let exchange = pending.first else {
            brokenUpstream("it sent a response to no request")
            return
        }
        exchange.respondedAt = Date()
        exchange.status = Int(head.status.code)
        var state = ResponseState(exchange: exchange, head: head)
        state.head.headers = maskedResponseHeaders(head.headers, into: exchange)
        if head.status == .switchingProtocols {
            // The switch happens at the end of this message (the decoder is still delivering it).
            exchange.note = "upgraded to \(head.headers["upgrade"].first ?? "another protocol"): relayed unmasked"
            state.mode = .upgrading
            response = state
            clientSide.write(.head(state.head))
            clientSide.flush()
            return
        }
        let hasBody = exchange.method != .HEAD && head.status.mayHaveResponseBody
        if !hasBody {
            // No body follows, whatever the framing headers say: the encoder must not end a chunked one.
            state.head.headers.remove(name: "transfer-encoding")
        }
        guard hasBody, let mask else {
            state.mode = .relay
            state.closeAfter = hasBody && Self.framing(of: head) == .closeDelimited
            response = state
            clientSide.write(.head(state.head))
            return
        }
        let coding = BodyCoding(contentEncoding: head.headers["content-encoding"])
        switch BodyKind(contentType: head.headers["content-type"].first) {
        case .binary(let type):
            exchange.note = "binary body (\(type)) not masked"
            state.mode = .relay
            state.closeAfter = Self.framing(of: head) == .closeDelimited
            response = state
            clientSide.write(.head(state.head))
        case .unknown:
            state.mode = .undecided(coding: coding)
            response = state // the head waits for the first bytes of the body
        case .text, .json:
            response = state
            startMasking(json: BodyKind(contentType: head.headers["content-type"].first) == .json, coding: coding, mask: mask)
        }
    }

    func responseBody(_ body: ByteBuffer) {
        guard !finished, let state = response else { return }
        state.exchange.responseBodyBytes += UInt64(body.readableBytes)
        deliver(body)
    }

    private func deliver(_ body: ByteBuffer) {
        guard var state = response else { return }
        switch state.mode {
        case .relay:
            if state.exchange.recordBody { state.exchange.keepResponse(body.readableBytesView) }
            clientSide.write(.body(.byteBuffer(body)))
        case .discard, .upgrading:
            break
        case .undecided(let coding):
            if coding == .identity, !BodyKind.looksLikeText(body) {
                state.exchange.note = "binary body (no Content-Type) not masked"
                state.mode = .relay
                state.closeAfter = Self.framing(of: state.head) == .closeDelimited
                response = state
                clientSide.write(.head(state.head))
            } else {
                startMasking(json: false, coding: coding, mask: mask!)
            }
            if case .undecided = response?.mode { return } // cannot happen: decided above
            deliver(body)
        case .masking(var masker):
            state.mode = .discard // while the masker is out of the state
            response = state
            do {
                let out = try masker.feed(body)
                state.mode = .masking(masker)
                response = state
                writeMasked(out)
            } catch {
                state.mode = .masking(masker)
                response = state
                cannotMask("\(error)")
            }
        }
    }

    func responseEnd(_ trailers: HTTPHeaders?) {
        guard !finished, var state = response else { return }
        if case .undecided(let coding) = state.mode {
            startMasking(json: false, coding: coding, mask: mask!) // an empty body
            state = response!
        }
        if case .masking(var masker) = state.mode {
            do {
                writeMasked(try masker.finish())
            } catch {
                cannotMask("\(error)")
                return
            }
            state.exchange.masked.add(masker.counts)
        }
        if case .upgrading = state.mode {
            // On the next turn of the loop, outside the decoders' callbacks.
            client.eventLoop.execute { self.upgrade() }
            return
        }
        response = nil
        if case .discard = state.mode {
            // the tool already has its 502; what the server sent is dropped with the connection
            finishExchange(state.exchange)
            closeBoth()
            return
        }
        clientSide.write(.end(state.mode.isMasking ? nil : trailers))
        clientSide.flush()
        finishExchange(state.exchange)
        if state.closeAfter {
            closeClientOutput()
            return
        }
        if pending.isEmpty, let refusal {
            answerRefusal(refusal.head, reason: refusal.reason)
        }
    }

    func responsesFlushed() {
        clientSide.flush()
    }

    /// Upstream sent EOF or went away.
    func upstreamClosed() {
        guard !finished else { return }
        if response != nil || !pending.isEmpty {
            let what = (response?.exchange ?? pending.first).map { "\($0.method) \($0.target)" } ?? "a request"
            connection.fail(end: .closedBy(.server), error: "the server closed the connection before it finished answering \(what)")
            if response == nil, let first = pending.first, refusal == nil {
                answerError(.badGateway, reason: "the server closed the connection without answering \(first.method) \(first.target)")
                return
            }
        }
        closeClientOutput()
    }

    // MARK: masking

    private func startMasking(json: Bool, coding: BodyCoding, mask: HTTPMaskRules) {
        guard var state = response else { return }
        if case .unsupported(let name) = coding {
            guard mask.blockOnError else {
                state.exchange.note = "body in content-encoding \(name) not masked (on-error: pass)"
                state.mode = .relay
                state.closeAfter = Self.framing(of: state.head) == .closeDelimited
                response = state
                clientSide.write(.head(state.head))
                return
            }
            state.mode = .discard
            response = state
            blockBeforeHead("cannot mask a body in content-encoding \(name) (on-error: block)")
            return
        }
        do {
            state.mode = .masking(try BodyMasker(engine: mask.engine, json: json, coding: coding))
        } catch {
            state.mode = .discard
            response = state
            blockBeforeHead("cannot start masking: \(error)")
            return
        }
        // The masked body's length is not known in advance: chunked for HTTP/1.1 tools, else
        // delimited by the end of the connection.
        var headers = state.head.headers
        headers.remove(name: "content-length")
        if coding != .identity { headers.remove(name: "content-encoding") }
        if state.exchange.version.major == 1, state.exchange.version.minor >= 1 {
            headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        } else {
            headers.remove(name: "transfer-encoding")
            headers.replaceOrAdd(name: "connection", value: "close")
            state.closeAfter = true
        }
        state.head.headers = headers
        state.head.version = state.exchange.version
        response = state
        clientSide.write(.head(state.head))
    }

    private func writeMasked(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, let state = response else { return }
        if state.exchange.recordBody { state.exchange.keepResponse(bytes) }
        clientSide.write(.body(.byteBuffer(client.allocator.buffer(bytes: bytes))))
    }

    /// A body that was being masked cannot go on: with `on-error: block` the tool's connection is
    /// cut (its client sees a framing error, never unmasked bytes); with `pass` too, since the
    /// rest cannot be relayed as it was once the coding was taken off.
    private func cannotMask(_ why: String) {
        guard let state = response else { return }
        let what = "\(state.exchange.method) \(state.exchange.target)"
        state.exchange.note = "masking stopped: \(why); the response was cut off"
        connection.fail(end: .proxyError, error: "cannot mask the response to \(what): \(why); the response was cut off")
        finishExchange(state.exchange)
        response = nil
        closeBoth()
    }

    /// Refuses to relay a response whose head is not yet sent: a 502 with the reason.
    private func blockBeforeHead(_ why: String) {
        guard let state = response else { return }
        state.exchange.note = why
        connection.fail(end: .proxyError, error: "\(state.exchange.method) \(state.exchange.target): \(why)")
        answer(.badGateway, reason: why, version: state.exchange.version)
    }

    // MARK: refusals and errors

    private func refuse(_ head: HTTPRequestHead, verdict: ProxyVerdict) {
        let c = connection.connection
        connection.publish(AuditEvent(
            type: .connect, verdict: .deny, reason: verdict.reason, process: c.process, destination: verdict.destination,
            protocol: .http, policy: verdict.policy, rule: verdict.rule, connection: c.connectionID,
            message: "request \(head.method) \(head.uri) refused on a kept-alive connection"))
        let exchange = Exchange(head: head, recordBody: false, bodyCap: 0)
        exchange.requestHeaders = recordedRequestHeaders(head.headers, into: exchange)
        exchange.status = 403
        exchange.note = "refused: \(verdict.reason)"
        refusal = (head, verdict.reason)
        if pending.isEmpty {
            recordRefused(exchange)
            answerRefusal(head, reason: verdict.reason)
        } else {
            pendingRefused = exchange
        }
    }

    private var pendingRefused: Exchange?

    private func answerRefusal(_ head: HTTPRequestHead, reason: String) {
        if let refused = pendingRefused {
            pendingRefused = nil
            recordRefused(refused)
        }
        answer(.forbidden, reason: reason, version: head.version)
    }

    private func recordRefused(_ exchange: Exchange) {
        exchange.respondedAt = Date()
        finishExchange(exchange, pop: false)
    }

    /// Answers the tool itself and ends the connection.
    private func answer(_ status: HTTPResponseStatus, reason: String, version: HTTPVersion) {
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

    private func answerError(_ status: HTTPResponseStatus, reason: String) {
        answer(status, reason: reason, version: pending.first?.version ?? .http1_1)
    }

    /// The server broke HTTP (a length that lies, bytes that do not parse): nothing more from it
    /// reaches the tool. A response already begun is cut off, so the tool's client sees an
    /// incomplete message rather than a wrong one.
    func brokenUpstream(_ why: String) {
        guard !finished else { return }
        let what = (response?.exchange ?? pending.first).map { " in the response to \($0.method) \($0.target)" } ?? ""
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

    private func closeClientOutput() {
        clientSide.closeOutputAfterWrites()
        if clientInputClosed { upstream.close(promise: nil) }
    }

    func closeBoth() {
        finished = true
        client.close(promise: nil)
        upstream.close(promise: nil)
    }

    // MARK: upgrades

    /// After a 101: the bytes are another protocol, relayed as they are (not masked; the exchange
    /// says so). The HTTP handlers leave both pipelines; bytes the decoders already hold go on.
    private func upgrade() {
        guard let state = response else { return }
        response = nil
        finishExchange(state.exchange)
        finished = true
        do {
            try connection.addUncountedRawRelay()
            let c = client.pipeline.syncOperations, u = upstream.pipeline.syncOperations
            c.removeHandler(clientSide, promise: nil)
            u.removeHandler(upstreamSide, promise: nil)
            if let d = try? u.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self) { u.removeHandler(d, promise: nil) }
            if let e = try? u.handler(type: HTTPRequestEncoder.self) { u.removeHandler(e, promise: nil) }
            if let d = try? c.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) { c.removeHandler(d, promise: nil) }
            if let e = try? c.handler(type: HTTPResponseEncoder.self) { c.removeHandler(e, promise: nil) }
            // A read held back by a side that left would never be issued.
            client.read()
            upstream.read()
        } catch {
            connection.fail(end: .proxyError, error: "cannot relay the upgraded connection: \(error)")
            closeBoth()
        }
    }

    // MARK: recording

    private func finishExchange(_ exchange: Exchange, pop: Bool = true) {
        if pop, !pending.isEmpty, pending[0] === exchange { pending.removeFirst() }
        let entry = exchange.entry(finishedAt: Date())
        recording.append(.http(entry))
        guard !entry.masked.isEmpty else { return }
        let c = connection.connection
        var event = AuditEvent(type: .mask, process: c.process, destination: c.destination, protocol: .http, policy: c.policy,
                               connection: c.connectionID, message: "\(entry.method) \(entry.target) → \(entry.status.map(String.init) ?? "no response")")
        event.masked = entry.masked
        connection.publish(event)
    }

    /// Request headers as the recording keeps them: those the policy names masked whole, the
    /// rest through the detectors (tokens in `Authorization`); the wire is not touched.
    private func recordedRequestHeaders(_ headers: HTTPHeaders, into exchange: Exchange) -> [RecordedHeader] {
        headers.map { name, value in
            let lower = name.lowercased()
            // Host names the destination, which every event shows anyway.
            guard let mask, lower != "host" else { return RecordedHeader(name: name, value: value) }
            let r = mask.headers.contains(lower)
                ? mask.engine.maskWhole(Array(value.utf8), countedAs: "header:\(lower)")
                : mask.engine.mask(Array(value.utf8))
            exchange.masked.add(r.counts)
            return RecordedHeader(name: name, value: String(decoding: r.bytes, as: UTF8.self))
        }
    }

    /// Response headers the policy names, masked whole on the wire.
    private func maskedResponseHeaders(_ headers: HTTPHeaders, into exchange: Exchange) -> HTTPHeaders {
        var out = headers
        if let mask, !mask.headers.isEmpty {
            out = HTTPHeaders(headers.map { name, value in
                let lower = name.lowercased()
                guard mask.headers.contains(lower) else { return (name, value) }
                let r = mask.engine.maskWhole(Array(value.utf8), countedAs: "header:\(lower)")
                exchange.masked.add(r.counts)
                return (name, String(decoding: r.bytes, as: UTF8.self))
            })
        }
        exchange.responseHeaders = out.map { RecordedHeader(name: $0.name, value: $0.value) }
        return out
    }

    // MARK: helpers

    enum Framing { case contentLength, chunked, closeDelimited }

    static func framing(of head: HTTPResponseHead) -> Framing {
        if head.headers["transfer-encoding"].contains(where: { $0.lowercased().contains("chunked") }) { return .chunked }
        if head.headers["content-length"].first != nil { return .contentLength }
        return .closeDelimited
    }

    /// The host a request names: the absolute-form target's, else the Host header's; lowercased,
    /// without port or brackets.
    static func host(of head: HTTPRequestHead) -> String? {
        var authority: Substring?
        if let r = head.uri.range(of: "://") {
            authority = head.uri[r.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        } else if let h = head.headers["host"].first {
            authority = Substring(h)
        }
        guard var a = authority?.trimmingCharacters(in: .whitespaces)[...], !a.isEmpty else { return nil }
        if let at = a.lastIndex(of: "@") { a = a[a.index(after: at)...] }
        if a.hasPrefix("["), let close = a.firstIndex(of: "]") {
            return String(a[a.index(after: a.startIndex)..<close]).lowercased()
        }
        if let colon = a.lastIndex(of: ":") { a = a[..<colon] }
        return a.isEmpty ? nil : a.lowercased()
    }
}

/// One request and its response, collected for the recording as they pass.
final class Exchange {
    let method: HTTPMethod
    let target: String
    let version: HTTPVersion
    let startedAt = Date()
    var respondedAt: Date?
    var status: Int?
    var requestHeaders: [RecordedHeader] = []
    var responseHeaders: [RecordedHeader] = []
    let recordBody: Bool
    let bodyCap: Int
    var requestBody: [UInt8] = []
    var responseBody: [UInt8] = []
    var requestBodyBytes: UInt64 = 0
    var responseBodyBytes: UInt64 = 0
    var truncated = false
    var masked = MaskCounts()
    var note: String?
    /// Masks the request body for the recording (the wire gets it as sent).
    var requestMasker: MaskingStream?

    init(head: HTTPRequestHead, recordBody: Bool, bodyCap: Int) {
        method = head.method
        target = head.uri
        version = head.version
        self.recordBody = recordBody
        self.bodyCap = bodyCap
    }

    func keepRequest(_ bytes: some Collection<UInt8>) { keep(bytes, in: &requestBody) }
    func keepResponse(_ bytes: some Collection<UInt8>) { keep(bytes, in: &responseBody) }

    private func keep(_ bytes: some Collection<UInt8>, in body: inout [UInt8]) {
        let room = bodyCap - body.count
        if bytes.count > room { truncated = true }
        if room > 0 { body.append(contentsOf: bytes.prefix(room)) }
    }

    func entry(finishedAt: Date) -> HTTPExchange {
        var counts: [String: Int] = masked.detectors
        for (k, v) in masked.fields { counts[k.hasPrefix("header:") ? k : "field:\(k)", default: 0] += v }
        return HTTPExchange(
            method: method.rawValue, target: target, version: "HTTP/\(version.major).\(version.minor)", status: status,
            requestHeaders: requestHeaders, responseHeaders: responseHeaders, requestBody: requestBody, responseBody: responseBody,
            requestBodyBytes: requestBodyBytes, responseBodyBytes: responseBodyBytes, truncated: truncated, startedAt: startedAt,
            respondedAt: respondedAt, finishedAt: finishedAt, masked: counts, note: note)
    }
}

/// What is being done with the response now arriving.
struct ResponseState {
    let exchange: Exchange
    var head: HTTPResponseHead
    var mode = Mode.relay
    /// The body ends with the connection: close the tool's side after it.
    var closeAfter = false

    enum Mode {
        case relay
        /// No Content-Type: the first bytes decide (the head is held until then).
        case undecided(coding: BodyCoding)
        case masking(BodyMasker)
        /// The tool was answered already (a 502); the server's body is dropped.
        case discard
        /// A 101: the connection becomes a byte relay once this message ends.
        case upgrading

        var isMasking: Bool { if case .masking = self { return true } else { return false } }
    }

    init(exchange: Exchange, head: HTTPResponseHead) {
        self.exchange = exchange
        self.head = head
    }
}
