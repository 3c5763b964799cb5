import BordergateAudit
import BordergateMasking
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore
import NIOHTTP1

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

/// How a response's body is delimited.
extension HTTPRelay {
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
}
