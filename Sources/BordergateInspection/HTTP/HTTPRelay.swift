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
    var pending: [Exchange] = []
    /// The request whose body is arriving from the tool.
    var sending: Exchange?
    /// The response arriving from upstream.
    var response: ResponseState?
    /// A request was refused: nothing more is sent upstream, and the refusal is answered once the
    /// responses before it are.
    var refusal: (head: HTTPRequestHead, reason: String)?
    var clientInputClosed = false
    var finished = false
    /// A refused request waiting for the answers before it, and the status it gets.
    var pendingRefused: Exchange?
    var refusalStatus = HTTPResponseStatus.forbidden
    /// The SNI of an intercepted TLS connection: requests must be for this host.
    var serverName: String?

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
        // Inside intercepted TLS, a Host other than the one the handshake named is domain fronting:
        // the verdict was made for the SNI, and the request would reach another site.
        if let serverName, let other = hosts.first(where: { $0 != serverName }) {
            refuse(head, reason: "request for \(other) inside TLS for \(serverName) (domain fronting) is refused",
                   status: .misdirectedRequest)
            return
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

    func deliver(_ body: ByteBuffer) {
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

    func closeClientOutput() {
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
    func upgrade() {
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

    func finishExchange(_ exchange: Exchange, pop: Bool = true) {
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

}
