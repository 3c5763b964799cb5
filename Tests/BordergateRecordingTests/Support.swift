import BordergateAudit
import BordergateRecording
import Foundation
import Logging

/// A fresh state directory under /tmp, removed by the caller.
func temporaryDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "bg-recording-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Collects what is logged, to check the words an operator would read.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String)] = []
    func add(_ level: Logger.Level, _ text: String) { lock.withLock { lines.append((level, text)) } }
    var all: [(Logger.Level, String)] { lock.withLock { lines } }
    var errors: [String] { all.filter { $0.0 >= .error }.map(\.1) }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(lines: self) }
    }

    struct Handler: LogHandler {
        let lines: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.add(event.level, "\(event.message)")
        }
    }
}

/// The events a recorder emitted.
final class EventSink: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [AuditEvent] = []
    var all: [AuditEvent] { lock.withLock { events } }
    var sink: @Sendable (AuditEvent) -> Void { { e in self.lock.withLock { self.events.append(e) } } }
}

let t0 = Date(timeIntervalSince1970: 1_790_000_000.25)

func start(_ id: String, content: Bool = true, at time: Date = t0, pid: Int = 4242, cgroup: String = "/ci/job-1",
           host: String? = "api.example.com", protocol p: WireProtocol = .http) -> SessionStart {
    SessionStart(id: id, startedAt: time,
                 process: AuditEvent.Process(pid: pid, ppid: 1, uid: 1000, user: "ci", comm: "curl", exe: "/usr/bin/curl", cgroup: cgroup),
                 destination: AuditEvent.Destination(ip: "198.51.100.10", port: 80, host: host, region: "aws:eu-west-1", country: "IE"),
                 policy: "eu-only", protocol: p, content: content)
}

func exchange(_ method: String = "POST", _ target: String = "/v1/users?q=1&x=a%20b", status: Int? = 200,
              request: String = "{\"email\":\"[email]\"}", response: [UInt8] = Array("{\"ok\":true}".utf8),
              at time: Date = t0, masked: [String: Int] = ["email": 2, "credit-card": 1]) -> SessionEntry {
    .http(HTTPExchange(method: method, target: target, status: status,
                       requestHeaders: [RecordedHeader(name: "Host", value: "api.example.com"),
                                        RecordedHeader(name: "Content-Type", value: "application/json")],
                       responseHeaders: [RecordedHeader(name: "Content-Type", value: "application/json")],
                       requestBody: Array(request.utf8), responseBody: response,
                       requestBodyBytes: UInt64(request.utf8.count), responseBodyBytes: UInt64(response.count),
                       startedAt: time.addingTimeInterval(0.01), respondedAt: time.addingTimeInterval(0.05),
                       finishedAt: time.addingTimeInterval(0.06), masked: masked))
}

func end(at time: Date = t0.addingTimeInterval(1)) -> SessionEnd {
    SessionEnd(endedAt: time, bytes: AuditEvent.Bytes(sent: 300, received: 900), ending: .closedBy(.client))
}

/// Records one whole session and waits for it to be stored.
func record(_ recorder: StoreRecorder, _ s: SessionStart, _ entries: [SessionEntry], endedAt: Date? = nil) {
    let r = recorder.open(s)
    for e in entries { r.append(e) }
    r.close(end(at: endedAt ?? s.startedAt.addingTimeInterval(1)))
    recorder.store.flush()
}
