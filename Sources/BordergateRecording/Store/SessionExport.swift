import BordergateAudit
import Foundation

/// A stored session as a file for other tools: HAR 1.2 (the HTTP exchanges, for browsers' and
/// proxies' viewers) or Bordergate's own JSON (everything kept, SQL statements too).
public enum SessionExport {
    public enum Format: String, Sendable, CaseIterable { case har, json }

    /// `version` is the creator's in HAR (Bordergate's version).
    public static func data(_ session: StoredSession, entries: [StoredEntry], format: Format, version: String) throws -> Data {
        let object: [String: Any] = switch format {
        case .har: har(session, entries: entries, version: version)
        case .json: json(session, entries: entries)
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    // MARK: HAR 1.2

    public static func har(_ s: StoredSession, entries: [StoredEntry], version: String) -> [String: Any] {
        let http = entries.filter { $0.kind == .http }
        var log: [String: Any] = [
            "version": "1.2",
            "creator": ["name": "bordergate", "version": version],
            "pages": [] as [Any],
            "entries": http.map { harEntry($0, session: s) },
        ]
        var comment = "Bordergate session \(s.id): \(s.process.exe ?? s.process.comm) (pid \(s.process.pid)) to \(s.destination.host ?? s.destination.ip):\(s.destination.port)"
        if !s.content { comment += "; metadata only: headers and bodies were not recorded" }
        if http.count < entries.count { comment += "; \(entries.count - http.count) non-HTTP entries left out (export as json)" }
        log["comment"] = comment
        return ["log": log]
    }

    static func harEntry(_ e: StoredEntry, session s: StoredSession) -> [String: Any] {
        let url = self.url(e, session: s)
        let requestHeaders = e.requestHeaders ?? []
        let responseHeaders = e.responseHeaders ?? []
        var request: [String: Any] = [
            "method": e.method ?? "",
            "url": url,
            "httpVersion": e.version ?? "HTTP/1.1",
            "cookies": [] as [Any],
            "headers": requestHeaders.map { ["name": $0.name, "value": $0.value] },
            "queryString": queryString(e.target ?? ""),
            "headersSize": -1,
            "bodySize": Int(clamping: e.requestBodyBytes),
        ]
        if let body = e.requestBody, !body.isEmpty {
            var post: [String: Any] = ["mimeType": header("content-type", in: requestHeaders) ?? ""]
            if let text = textual(body) {
                post["text"] = text
            } else {
                post["text"] = Data(body).base64EncodedString()
                post["comment"] = "binary body, base64"
            }
            request["postData"] = post
        }
        var content: [String: Any] = [
            "size": Int(clamping: e.responseBodyBytes),
            "mimeType": header("content-type", in: responseHeaders) ?? "",
        ]
        if let body = e.responseBody, !body.isEmpty {
            if let text = textual(body) {
                content["text"] = text
            } else {
                content["text"] = Data(body).base64EncodedString()
                content["encoding"] = "base64"
            }
        }
        if e.truncated { content["comment"] = "truncated: the recording keeps part of the body" }
        let response: [String: Any] = [
            "status": e.status ?? 0,
            "statusText": e.status.map(reasonPhrase) ?? "",
            "httpVersion": e.version ?? "HTTP/1.1",
            "cookies": [] as [Any],
            "headers": responseHeaders.map { ["name": $0.name, "value": $0.value] },
            "content": content,
            "redirectURL": header("location", in: responseHeaders) ?? "",
            "headersSize": -1,
            "bodySize": e.status == nil ? -1 : Int(clamping: e.responseBodyBytes),
        ]
        let wait = e.respondedAt.map { max(0, $0.timeIntervalSince(e.startedAt) * 1000) } ?? max(0, e.finishedAt.timeIntervalSince(e.startedAt) * 1000)
        let receive = e.respondedAt.map { max(0, e.finishedAt.timeIntervalSince($0) * 1000) } ?? 0
        var entry: [String: Any] = [
            "startedDateTime": AuditTime.format(e.startedAt),
            "time": round3(wait + receive),
            "request": request,
            "response": response,
            "cache": [String: Any](),
            "timings": ["send": 0, "wait": round3(wait), "receive": round3(receive)],
            "connection": s.id,
            "serverIPAddress": s.destination.ip,
        ]
        var notes: [String] = []
        if e.status == nil { notes.append("no response") }
        if let note = e.note { notes.append(note) }
        if !e.masked.isEmpty { notes.append("masked: " + maskedText(e.masked)) }
        if !notes.isEmpty { entry["comment"] = notes.joined(separator: "; ") }
        return entry
    }

    /// The request's URL: the target itself in absolute form, else scheme, host and target.
    public static func url(_ e: StoredEntry, session s: StoredSession) -> String {
        let target = e.target ?? "/"
        if target.hasPrefix("http://") || target.hasPrefix("https://") { return target }
        let tls = s.protocol == "tls"
        let host = header("host", in: e.requestHeaders ?? []) ?? {
            let name = s.destination.host ?? (s.destination.ip.contains(":") ? "[\(s.destination.ip)]" : s.destination.ip)
            let standard = tls ? 443 : 80
            return s.destination.port == standard ? name : "\(name):\(s.destination.port)"
        }()
        return "\(tls ? "https" : "http")://\(host)\(target.hasPrefix("/") ? target : "/" + target)"
    }

    static func queryString(_ target: String) -> [[String: String]] {
        guard let q = target.split(separator: "?", maxSplits: 1).dropFirst().first else { return [] }
        return q.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(kv[0])
            let value = kv.count > 1 ? String(kv[1]) : ""
            return ["name": name.removingPercentEncoding ?? name, "value": value.removingPercentEncoding ?? value]
        }
    }

    static func header(_ name: String, in headers: [RecordedHeader]) -> String? {
        headers.first { $0.name.lowercased() == name }?.value
    }

    static func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

    // MARK: Bordergate's JSON

    public static func json(_ s: StoredSession, entries: [StoredEntry]) -> [String: Any] {
        ["session": sessionObject(s), "entries": entries.map(entryObject)]
    }

    public static func sessionObject(_ s: StoredSession) -> [String: Any] {
        var process: [String: Any] = ["pid": s.process.pid, "uid": s.process.uid, "comm": s.process.comm, "cgroup": s.process.cgroup]
        process["ppid"] = s.process.ppid
        process["user"] = s.process.user
        process["exe"] = s.process.exe
        var destination: [String: Any] = ["ip": s.destination.ip, "port": s.destination.port]
        destination["host"] = s.destination.host
        destination["region"] = s.destination.region
        destination["country"] = s.destination.country
        var o: [String: Any] = [
            "id": s.id, "started_at": AuditTime.format(s.startedAt), "process": process, "destination": destination,
            "policy": s.policy, "protocol": s.protocol, "entries": s.entries, "content": s.content,
            "stored_bytes": Int(clamping: s.storedBytes), "masked": s.masked,
        ]
        o["ended_at"] = s.endedAt.map(AuditTime.format)
        o["duration_ms"] = s.duration.map { round3($0 * 1000) }
        o["bytes"] = s.bytes.map { ["sent": Int(clamping: $0.sent), "received": Int(clamping: $0.received)] }
        o["ending"] = s.ending
        o["sha256"] = s.sha256
        return o
    }

    public static func entryObject(_ e: StoredEntry) -> [String: Any] {
        var o: [String: Any] = ["seq": e.seq, "kind": e.kind.rawValue, "started_at": AuditTime.format(e.startedAt),
                                "finished_at": AuditTime.format(e.finishedAt)]
        o["responded_at"] = e.respondedAt.map(AuditTime.format)
        if !e.masked.isEmpty { o["masked"] = e.masked }
        o["note"] = e.note
        switch e.kind {
        case .http:
            o["method"] = e.method
            o["target"] = e.target
            o["version"] = e.version
            o["status"] = e.status
            o["request_headers"] = e.requestHeaders.map { $0.map { ["name": $0.name, "value": $0.value] } }
            o["response_headers"] = e.responseHeaders.map { $0.map { ["name": $0.name, "value": $0.value] } }
            o["request_body"] = e.requestBody.map(bodyObject)
            o["response_body"] = e.responseBody.map(bodyObject)
            o["request_body_bytes"] = Int(clamping: e.requestBodyBytes)
            o["response_body_bytes"] = Int(clamping: e.responseBodyBytes)
            o["truncated"] = e.truncated
        case .sql:
            o["text"] = e.sqlText
            o["parameters"] = e.sqlParameters.map { $0.map { p -> Any in p.map { $0 as Any } ?? NSNull() } }
            o["rows"] = e.sqlRows.map { Int(clamping: $0) }
            o["outcome"] = e.sqlOutcome
            o["guardrail"] = e.sqlGuardrail
        }
        return o
    }

    static func bodyObject(_ b: [UInt8]) -> [String: Any] {
        if let text = textual(b) { return ["text": text] }
        return ["base64": Data(b).base64EncodedString()]
    }

    // MARK: Shared with the CLI's text

    /// The body as text when it is UTF-8 without control characters other than whitespace.
    public static func textual(_ b: [UInt8]) -> String? {
        guard let s = String(validating: b, as: UTF8.self) else { return nil }
        for u in s.unicodeScalars where u.value < 0x20 && u != "\n" && u != "\r" && u != "\t" { return nil }
        return s
    }

    /// `email 2, credit-card 1`: most first, then by name.
    public static func maskedText(_ m: [String: Int]) -> String {
        m.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            .joined(separator: ", ")
    }

    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 303: "See Other"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: ""
        }
    }
}
