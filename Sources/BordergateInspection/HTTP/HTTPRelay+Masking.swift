import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Masking a response on its way to the tool, and what a masked connection changes in requests
/// and records of headers.
extension HTTPRelay {
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

    func startMasking(json: Bool, coding: BodyCoding, mask: HTTPMaskRules) {
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

    func writeMasked(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, let state = response else { return }
        if state.exchange.recordBody { state.exchange.keepResponse(bytes) }
        clientSide.write(.body(.byteBuffer(client.allocator.buffer(bytes: bytes))))
    }

    /// A body that was being masked cannot go on: with `on-error: block` the tool's connection is
    /// cut (its client sees a framing error, never unmasked bytes); with `pass` too, since the
    /// rest cannot be relayed as it was once the coding was taken off.
    func cannotMask(_ why: String) {
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
    func blockBeforeHead(_ why: String) {
        guard let state = response else { return }
        state.exchange.note = why
        state.exchange.status = 502
        connection.fail(end: .proxyError, error: "\(state.exchange.method) \(Self.path(of: state.exchange.target)): \(why)")
        finishExchange(state.exchange)
        response = nil
        answer(.badGateway, reason: why, version: state.exchange.version)
    }

    /// Request headers as the recording keeps them: those the policy names masked whole, the
    /// rest through the detectors (tokens in `Authorization`); the wire is not touched.
    func recordedRequestHeaders(_ headers: HTTPHeaders, into exchange: Exchange) -> [RecordedHeader] {
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
    func recordedTarget(_ target: String, into exchange: Exchange) -> String {
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
}
