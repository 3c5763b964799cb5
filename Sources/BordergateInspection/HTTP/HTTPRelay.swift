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
        // A tunnel would carry anything past the masker and past per-request verdicts.
        if head.method == .CONNECT {
            refuse(head, reason: "CONNECT tunnels are not relayed by Bordergate's HTTP inspection")
            return
        }
        let hosts: [String]
        switch Self.hosts(of: head) {
        case .failure(let bad):
            refuse(head, reason: bad.why, status: .badRequest)
            return
        case .success(let h):
            hosts = h
        }
        // Every request is decided, not only the first: a later one may name another host, and an
        // absolute-form target is decided together with its Host header.
        if let decide = connection.connection.decide {
            for host in hosts.isEmpty ? [nil] : hosts.map(Optional.some) {
                let verdict = decide(host.map(HostObservation.name) ?? .none)
                if !verdict.relay {
                    refuse(head, verdict: verdict)
                    return
                }
                if verdict.verdict == .audit { publishVerdict(verdict, for: head) }
            }
        }
        var head = head
        let exchange = Exchange(head: head, recordBody: recordContent, bodyCap: bodyCap)
        exchange.recordedTarget = recordedTarget(head.uri, into: exchange)
        exchange.requestHeaders = recordedRequestHeaders(head.headers, into: exchange)
        if let mask {
            if recordContent { exchange.requestMasker = mask.engine.makeStream() }
            Self.prepareForMasking(&head, blockOnError: mask.blockOnError, exchange: exchange)
        }
        pending.append(exchange)
        sending = exchange
        upstreamSide.write(.head(head))
    }

    /// What a masked connection changes in a request so that the response can be masked: only
    /// codings Bordergate decodes are offered, whole bodies are asked for (a range could cut a
    /// value in two, or come as multipart/byteranges), and, under `on-error: block`, no protocol
    /// switch is offered (the bytes after it could not be masked).
    static func prepareForMasking(_ head: inout HTTPRequestHead, blockOnError: Bool, exchange: Exchange) {
        if head.headers.contains(name: "accept-encoding") {
            head.headers.replaceOrAdd(name: "accept-encoding", value: "gzip, deflate")
        }
        head.headers.remove(name: "te")
        head.headers.remove(name: "range")
        head.headers.remove(name: "if-range")
        if head.headers.contains(name: "upgrade") {
            if blockOnError {
                head.headers.remove(name: "upgrade")
                head.headers.remove(name: "http2-settings")
                let tokens = head.headers["connection"].flatMap { $0.split(separator: ",") }
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !["upgrade", "http2-settings"].contains($0.lowercased()) }
                head.headers.remove(name: "connection")
                if !tokens.isEmpty { head.headers.add(name: "connection", value: tokens.joined(separator: ", ")) }
                exchange.note = "upgrade not offered: its bytes could not be masked (on-error: block)"
            } else {
                exchange.upgradeRequested = true
            }
        }
    }

    /// The verdict of a request that is let through but would have been refused (audit mode).
    private func publishVerdict(_ verdict: ProxyVerdict, for head: HTTPRequestHead) {
        let c = connection.connection
        connection.publish(AuditEvent(
            type: .connect, verdict: verdict.verdict, reason: verdict.reason, process: c.process, destination: verdict.destination,
            protocol: .http, policy: verdict.policy, rule: verdict.rule, connection: c.connectionID,
            message: "request \(head.method) \(Self.path(of: head.uri)) on a kept-alive connection"))
    }

    /// Requests sent and not yet answered; the tool is not read while there are this many.
    static let pipelineLimit = 32
    var backlogged: Bool { pending.count >= Self.pipelineLimit }

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
            var interim = head // 100 Continue, 103 Early Hints
            interim.headers = maskedResponseHeaders(head.headers, into: nil)
            clientSide.write(.head(interim))
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
        if head.status == .switchingProtocols, mask != nil, !exchange.upgradeRequested {
            // Upgrades were not offered (on-error: block): what follows could not be masked.
            state.mode = .discard
            response = state
            blockBeforeHead("the server switched protocols, whose bytes cannot be masked (on-error: block)")
            return
        }
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
        } else if Self.framing(of: head) == .chunked, Self.onlyChunked(head) {
            // The encoder chunks only for exactly "chunked" (not "Chunked", not two headers).
            state.head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        }
        // The request decoder stops for good after an upgrade request that was not switched.
        if exchange.upgradeRequested { state.closeAfter = true }
        guard hasBody, let mask else {
            state.mode = .relay
            state.closeAfter = hasBody && Self.framing(of: head) == .closeDelimited
            response = state
            clientSide.write(.head(state.head))
            return
        }
        var coding = BodyCoding(contentEncoding: head.headers["content-encoding"])
        if !Self.onlyChunked(head) {
            // a transfer coding NIO does not take off (gzip, chunked)
            coding = .unsupported("transfer-encoding " + head.headers["transfer-encoding"].joined(separator: ", "))
        }
        let kind = BodyKind(contentTypes: head.headers["content-type"])
        switch kind {
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
            startMasking(json: kind == .json, coding: coding, mask: mask)
        case .unmaskable(let why):
            response = state
            startMasking(json: false, coding: .unsupported(why), mask: mask)
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
            guard let started = response else { return } // answered already (a 502)
            state = started
        }
        if case .masking(var masker) = state.mode {
            do {
                writeMasked(try masker.finish())
            } catch {
                cannotMask("\(error)")
                return
            }
            state.exchange.addWire(masker.counts)
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
            let what = (response?.exchange ?? pending.first).map { "\($0.method) \(Self.path(of: $0.target))" } ?? "a request"
            connection.fail(end: .closedBy(.server), error: "the server closed the connection before it finished answering \(what)")
            if response == nil, let first = pending.first, refusal == nil {
                answerError(.badGateway, reason: "the server closed the connection without answering \(first.method) \(Self.path(of: first.target))")
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
                state.exchange.note = "body in \(name) not masked (on-error: pass)"
                state.mode = .relay
                state.closeAfter = Self.framing(of: state.head) == .closeDelimited
                response = state
                clientSide.write(.head(state.head))
                return
            }
            state.mode = .discard
            response = state
            blockBeforeHead("cannot mask a body in \(name) (on-error: block)")
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
        if !state.head.isKeepAlive || Self.framing(of: state.head) == .closeDelimited {
            // upstream ends this connection after the body: the tool must not reuse it either
            headers.replaceOrAdd(name: "connection", value: "close")
            state.closeAfter = true
        }
        if state.exchange.version.major == 1, state.exchange.version.minor >= 1 {
            headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        } else {
            headers.remove(name: "transfer-encoding")
            headers.replaceOrAdd(name: "connection", value: "close")
            state.closeAfter = true
        }
        state.head.headers = headers
        state.head.version = state.exchange.version
        state.exchange.responseHeaders = headers.map { RecordedHeader(name: $0.name, value: $0.value) } // as the tool gets them
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
        let what = "\(state.exchange.method) \(Self.path(of: state.exchange.target))"
        if case .masking(let masker) = state.mode { state.exchange.addWire(masker.counts) }
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
        state.exchange.status = 502
        connection.fail(end: .proxyError, error: "\(state.exchange.method) \(Self.path(of: state.exchange.target)): \(why)")
        finishExchange(state.exchange)
        response = nil
        answer(.badGateway, reason: why, version: state.exchange.version)
    }

    // MARK: refusals and errors

    private func refuse(_ head: HTTPRequestHead, verdict: ProxyVerdict) {
        let c = connection.connection
        connection.publish(AuditEvent(
            type: .connect, verdict: .deny, reason: verdict.reason, process: c.process, destination: verdict.destination,
            protocol: .http, policy: verdict.policy, rule: verdict.rule, connection: c.connectionID,
            message: "request \(head.method) \(Self.path(of: head.uri)) refused"))
        refuse(head, reason: verdict.reason, published: true)
    }

    /// Refuses a request in its turn: a 403 (or `status`) once the answers before it are sent.
    private func refuse(_ head: HTTPRequestHead, reason: String, status: HTTPResponseStatus = .forbidden, published: Bool = false) {
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

    private var pendingRefused: Exchange?
    private var refusalStatus = HTTPResponseStatus.forbidden

    private func answerRefusal(_ head: HTTPRequestHead, reason: String) {
        if let refused = pendingRefused {
            pendingRefused = nil
            recordRefused(refused)
        }
        answer(refusalStatus, reason: reason, version: head.version)
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

    private func closeClientOutput() {
        clientSide.closeOutputAfterWrites()
        if clientInputClosed { upstream.close(promise: nil) }
        // A tool that keeps its side open after the last answer does not hold the connection.
        let client = self.client
        client.eventLoop.scheduleTask(in: .seconds(30)) { client.close(promise: nil) }
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
        if pop { clientSide.partnerWritable() } // below the pipelining limit again
        guard !exchange.maskedOnWire.isEmpty else { return }
        let c = connection.connection
        var event = AuditEvent(type: .mask, process: c.process, destination: c.destination, protocol: .http, policy: c.policy,
                               connection: c.connectionID,
                               message: "\(entry.method) \(Self.path(of: entry.target)) → \(entry.status.map(String.init) ?? "no response")")
        event.masked = Exchange.eventCounts(exchange.maskedOnWire)
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

    /// The request target for the recording: through the detectors when the policy masks (a
    /// query can carry an e-mail address or a token).
    private func recordedTarget(_ target: String, into exchange: Exchange) -> String {
        guard let mask else { return target }
        let r = mask.engine.mask(Array(target.utf8))
        exchange.masked.add(r.counts)
        return String(decoding: r.bytes, as: UTF8.self)
    }

    /// Framing and caching headers, which hold no personal data and must stay as they are.
    static let structuralHeaders: Set<String> = [
        "content-length", "content-type", "content-encoding", "transfer-encoding", "connection", "keep-alive",
        "date", "last-modified", "expires", "etag", "upgrade", "vary", "cache-control", "age", "accept-ranges", "server",
    ]

    /// Response headers on the wire: those the policy names masked whole, the others (but the
    /// structural ones) through the detectors (`Location` can carry an e-mail address).
    func maskedResponseHeaders(_ headers: HTTPHeaders, into exchange: Exchange?) -> HTTPHeaders {
        var out = headers
        if let mask {
            out = HTTPHeaders(headers.map { name, value in
                let lower = name.lowercased()
                if Self.structuralHeaders.contains(lower) { return (name, value) }
                let r = mask.headers.contains(lower)
                    ? mask.engine.maskWhole(Array(value.utf8), countedAs: "header:\(lower)")
                    : mask.engine.mask(Array(value.utf8))
                exchange?.addWire(r.counts)
                return (name, String(decoding: r.bytes, as: UTF8.self))
            })
        }
        exchange?.responseHeaders = out.map { RecordedHeader(name: $0.name, value: $0.value) }
        return out
    }

    // MARK: helpers

    enum Framing { case contentLength, chunked, closeDelimited }

    /// Whether every transfer coding is `chunked` (or there is none).
    static func onlyChunked(_ head: HTTPResponseHead) -> Bool {
        head.headers["transfer-encoding"].flatMap { $0.split(separator: ",") }
            .allSatisfy { $0.trimmingCharacters(in: .whitespaces).lowercased() == "chunked" }
    }

    static func framing(of head: HTTPResponseHead) -> Framing {
        if head.headers["transfer-encoding"].contains(where: { $0.lowercased().contains("chunked") }) { return .chunked }
        if head.headers["content-length"].first != nil { return .contentLength }
        return .closeDelimited
    }

    /// The hosts a request names, each to be decided: the absolute-form target's authority and
    /// the Host header, lowercased, without port, brackets or a trailing dot. A request whose Host
    /// is repeated or malformed is refused: a server might route by a name other than the one decided.
    static func hosts(of head: HTTPRequestHead) -> Result<[String], BadHost> {
        var out: [String] = []
        if let scheme = head.uri.range(of: "://"), isScheme(head.uri[..<scheme.lowerBound]) {
            let authority = head.uri[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            guard let h = hostName(authority) else { return .failure(BadHost(why: "the request target's host is not a valid name")) }
            out.append(h)
        }
        let values = head.headers["host"]
        guard values.count <= 1 else { return .failure(BadHost(why: "the request has \(values.count) Host headers; expected one")) }
        if let value = values.first {
            guard let h = hostName(Substring(value)) else { return .failure(BadHost(why: "the Host header is not a valid host name")) }
            if !out.contains(h) { out.append(h) }
        }
        return .success(out)
    }

    struct BadHost: Error { let why: String }

    private static func isScheme(_ s: Substring) -> Bool {
        guard let first = s.first, first.isASCII, first.isLetter else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
    }

    /// `name`, `name:port`, `1.2.3.4:port`, `[v6]:port` → the name; anything else (user info,
    /// lists, spaces) → nil.
    static func hostName(_ raw: Substring) -> String? {
        var a = raw.trimmingCharacters(in: .whitespaces)[...]
        if a.hasPrefix("[") {
            guard let close = a.firstIndex(of: "]") else { return nil }
            let rest = a[a.index(after: close)...]
            guard rest.isEmpty || (rest.first == ":" && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            let v6 = a[a.index(after: a.startIndex)..<close]
            guard !v6.isEmpty, v6.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
            return v6.lowercased()
        }
        if let colon = a.firstIndex(of: ":") {
            let port = a[a.index(after: colon)...]
            guard port.allSatisfy(\.isNumber) else { return nil }
            a = a[..<colon]
        }
        if a.hasSuffix(".") { a = a.dropLast() }
        guard !a.isEmpty, a.count <= 253,
              a.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") }) else { return nil }
        return a.lowercased()
    }

    /// A target without its query or fragment, for events (a query often carries tokens).
    static func path(of target: String) -> String {
        String(target.prefix { $0 != "?" && $0 != "#" })
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
    /// The target as the recording keeps it (masked when the policy masks).
    var recordedTarget: String
    /// What was masked on the wire (the `mask` event); ``masked`` adds what only the recording masked.
    var maskedOnWire = MaskCounts()
    /// The tool asked to switch protocols and the policy lets it (`on-error: pass`).
    var upgradeRequested = false

    init(head: HTTPRequestHead, recordBody: Bool, bodyCap: Int) {
        method = head.method
        target = head.uri
        recordedTarget = Self.eventPath(head.uri)
        version = head.version
        self.recordBody = recordBody
        self.bodyCap = bodyCap
    }

    static func eventPath(_ target: String) -> String { HTTPRelay.path(of: target) }

    func keepRequest(_ bytes: some Collection<UInt8>) { keep(bytes, in: &requestBody) }
    func keepResponse(_ bytes: some Collection<UInt8>) { keep(bytes, in: &responseBody) }

    private func keep(_ bytes: some Collection<UInt8>, in body: inout [UInt8]) {
        let room = bodyCap - body.count
        if bytes.count > room { truncated = true }
        if room > 0 { body.append(contentsOf: bytes.prefix(room)) }
    }

    func addWire(_ counts: MaskCounts) {
        maskedOnWire.add(counts)
        masked.add(counts)
    }

    /// Counts as events and recordings name them: detectors by name, field rules as `field:NAME`,
    /// header rules as `header:NAME`.
    static func eventCounts(_ c: MaskCounts) -> [String: Int] {
        var counts: [String: Int] = c.detectors
        for (k, v) in c.fields { counts[k.hasPrefix("header:") ? k : "field:\(k)", default: 0] += v }
        return counts
    }

    func entry(finishedAt: Date) -> HTTPExchange {
        let counts = Self.eventCounts(masked)
        return HTTPExchange(
            method: method.rawValue, target: recordedTarget, version: "HTTP/\(version.major).\(version.minor)", status: status,
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
