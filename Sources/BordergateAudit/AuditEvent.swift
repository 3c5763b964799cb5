import Foundation

/// One audit event: the same JSON object in the log file, on the control socket and in `-o json`
/// (DESIGN.md, "The audit event"). Field names never change once released; fields may be added.
public struct AuditEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case connect, close, policy, session, mask, daemon
    }

    public struct Process: Codable, Sendable, Equatable {
        public var pid: Int
        public var ppid: Int?
        public var uid: Int
        public var user: String?
        public var comm: String
        public var exe: String?
        public var cgroup: String

        public init(pid: Int, ppid: Int?, uid: Int, user: String?, comm: String, exe: String?, cgroup: String) {
            self.pid = pid
            self.ppid = ppid
            self.uid = uid
            self.user = user
            self.comm = comm
            self.exe = exe
            self.cgroup = cgroup
        }
    }

    public struct Destination: Codable, Sendable, Equatable {
        public var ip: String
        public var port: Int
        public var host: String?
        public var region: String?
        public var country: String?
        public var jurisdictions: [String]?

        public init(ip: String, port: Int, host: String? = nil, region: String? = nil, country: String? = nil,
                    jurisdictions: [String]? = nil) {
            self.ip = ip
            self.port = port
            self.host = host
            self.region = region
            self.country = country
            self.jurisdictions = jurisdictions
        }
    }

    public struct Bytes: Codable, Sendable, Equatable {
        /// From the tool to the destination.
        public var sent: UInt64
        /// From the destination to the tool.
        public var received: UInt64

        public init(sent: UInt64, received: UInt64) {
            self.sent = sent
            self.received = received
        }
    }

    public var time: Date
    public var id: String
    public var type: Kind
    /// `redirect` (relayed through the proxy), `pass` (direct), `deny`.
    public var verdict: String?
    public var reason: String?
    public var process: Process?
    public var destination: Destination?
    public var `protocol`: String?
    public var policy: String?
    public var connection: String?
    public var bytes: Bytes?
    public var duration_ms: Double?
    /// How a connection ended (close events): `closed`, `reset`, `upstream-refused`, ...
    public var end: String?
    /// What went wrong, in words, when something did.
    public var error: String?
    /// Free-form detail for non-connection events (daemon start, attach, ...).
    public var message: String?

    public init(time: Date = Date(), id: String = AuditEvent.newID(), type: Kind, verdict: String? = nil,
                reason: String? = nil, process: Process? = nil, destination: Destination? = nil,
                protocol: String? = nil, policy: String? = nil, connection: String? = nil, bytes: Bytes? = nil,
                duration_ms: Double? = nil, end: String? = nil, error: String? = nil, message: String? = nil) {
        self.time = time
        self.id = id
        self.type = type
        self.verdict = verdict
        self.reason = reason
        self.process = process
        self.destination = destination
        self.protocol = `protocol`
        self.policy = policy
        self.connection = connection
        self.bytes = bytes
        self.duration_ms = duration_ms
        self.end = end
        self.error = error
        self.message = message
    }

    /// A sortable unique id: milliseconds since the epoch and a per-process counter, in hex.
    public static func newID(now: Date = Date()) -> String {
        let ms = UInt64(now.timeIntervalSince1970 * 1000)
        let n = idCounter.next()
        return String(ms, radix: 16) + "-" + processTag + "-" + String(n, radix: 16)
    }

    private static let processTag = String(UInt32(truncatingIfNeeded: getpid()) ^ UInt32.random(in: 0...UInt32.max), radix: 36)
    private static let idCounter = Counter()
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: UInt64 = 0
    func next() -> UInt64 { lock.withLock { value += 1; return value } }
}

extension AuditEvent {
    /// The encoder every writer of events uses: RFC 3339 UTC with microseconds, no escaped slashes.
    public static func makeEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(AuditTime.format(date))
        }
        return e
    }

    public static func makeDecoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = AuditTime.parse(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an RFC 3339 time: \(s)")
            }
            return date
        }
        return d
    }

}

/// RFC 3339 times with microseconds, as events carry them.
public enum AuditTime {
    public static func format(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var secs = time_t(t.rounded(.down))
        var micros = Int(((t - Double(secs)) * 1_000_000).rounded())
        if micros >= 1_000_000 { secs += 1; micros -= 1_000_000 }
        var tm = tm()
        gmtime_r(&secs, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let us = String(micros)
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))."
            + String(repeating: "0", count: 6 - us.count) + us + "Z"
    }

    /// Parses RFC 3339 times with or without fractional seconds, `Z` or an offset.
    public static func parse(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: s) { return d }
        // more than millisecond precision: parse the whole seconds and add the fraction
        if let dot = s.firstIndex(of: "."), let zone = s[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) {
            let whole = String(s[..<dot]) + String(s[zone...])
            if let d = f.date(from: whole), let frac = Double("0" + s[dot..<zone]) {
                return d.addingTimeInterval(frac)
            }
        }
        return nil
    }
}
