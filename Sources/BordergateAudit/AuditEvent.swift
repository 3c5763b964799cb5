import Foundation

/// One audit event: the same JSON object in the log file, on the control socket and in `-o json`
/// (docs/ARCHITECTURE.md, "Audit"; README, "The audit event"). Field names never change once released; fields may be added.
public struct AuditEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case connect, close, policy, session, mask, tls, daemon
        /// A statement held or refused by a guardrail, and its approval or denial (PostgreSQL).
        case guardrail
        /// A signed checkpoint of the log's chain (Evidence/Checkpoint.swift); readers of events skip it.
        case checkpoint
        /// Events that could not be recorded one by one (a full kernel ring buffer, a full writer
        /// queue): `count` says how many, `reason` where they were lost and what they were.
        case drop
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

    /// What a `session` event says of the recording that closed: its id (the connection's), how
    /// many exchanges or statements it holds, how many bytes were stored, and the SHA-256 of them.
    public struct Session: Codable, Sendable, Equatable {
        public var id: String
        public var entries: Int
        public var bytes: UInt64
        public var sha256: String

        public init(id: String, entries: Int, bytes: UInt64, sha256: String) {
            self.id = id
            self.entries = entries
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public var time: Date
    public var id: String
    public var type: Kind
    /// `redirect` (relayed through the proxy), `pass` (direct), `deny`, `audit` (would have been
    /// denied; the policy is in audit mode). Policy events: `grant`, `grant-expired`, `error`.
    public var verdict: Verdict?
    public var reason: String?
    public var process: Process?
    public var destination: Destination?
    public var `protocol`: WireProtocol?
    public var policy: String?
    /// Which rule of the policy decided ("deny[0]: country RU", "default", "grant g1-…").
    public var rule: String?
    public var connection: String?
    public var bytes: Bytes?
    public var duration_ms: Double?
    /// How a connection ended (close events): `closed`, `reset`, `upstream-refused`, ...
    public var end: ConnectionEnding?
    /// What went wrong, in words, when something did.
    public var error: String?
    /// Free-form detail for non-connection events (daemon start, attach, ...).
    public var message: String?
    /// `session` events: the recording that closed.
    public var session: Session?
    /// `mask` events: how many values were masked, by detector (`email`) or field rule
    /// (`field:password`, `header:set-cookie`); never a value.
    public var masked: [String: Int]?
    /// `guardrail` events: the id `bordergate approve` and `deny` take.
    public var request: String?
    /// How many occurrences one event stands for: a connect `deny` aggregating refusals of one
    /// process to one destination (absent: one), and a `drop` event's lost events.
    public var count: UInt64?
    /// Where the event is in its host's log, gap-free, and the log's hash chain after it: written
    /// by the log (Evidence/Chain.swift), last in the line; nil on events not read from a log.
    public var seq: UInt64?
    public var chain: String?

    public init(time: Date = Date(), id: String = AuditEvent.newID(), type: Kind, verdict: Verdict? = nil,
                reason: String? = nil, process: Process? = nil, destination: Destination? = nil,
                protocol: WireProtocol? = nil, policy: String? = nil, rule: String? = nil, connection: String? = nil, bytes: Bytes? = nil,
                duration_ms: Double? = nil, end: ConnectionEnding? = nil, error: String? = nil, message: String? = nil,
                count: UInt64? = nil) {
        self.time = time
        self.id = id
        self.type = type
        self.verdict = verdict
        self.reason = reason
        self.process = process
        self.destination = destination
        self.protocol = `protocol`
        self.policy = policy
        self.rule = rule
        self.connection = connection
        self.bytes = bytes
        self.duration_ms = duration_ms
        self.end = end
        self.error = error
        self.message = message
        self.count = count
    }

    /// A sortable unique id: milliseconds since the epoch and a per-process counter, in hex.
    /// Formatted by hand: two of these are made for every proxied connection.
    public static func newID(now: Date = Date()) -> String {
        let ms = UInt64(now.timeIntervalSince1970 * 1000)
        let n = idCounter.next()
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { buf in
            var i = 0
            Hex.write(ms, to: buf, at: &i)
            buf[i] = UInt8(ascii: "-"); i += 1
            for b in processTag { buf[i] = b; i += 1 }
            buf[i] = UInt8(ascii: "-"); i += 1
            Hex.write(n, to: buf, at: &i)
            return String(decoding: UnsafeBufferPointer(rebasing: buf[0..<i]), as: UTF8.self)
        }
    }

    private static let processTag = Array(String(UInt32(truncatingIfNeeded: getpid()) ^ UInt32.random(in: 0...UInt32.max), radix: 36).utf8.prefix(8))
    private static let idCounter = Counter()
}

/// Lower-case hexadecimal without String(radix:) and its allocations.
public enum Hex {
    /// Writes `v` at `buf[i...]` (at most 16 digits) and advances `i`.
    public static func write(_ v: UInt64, to buf: UnsafeMutableBufferPointer<UInt8>, at i: inout Int) {
        let digits = max(1, (64 - v.leadingZeroBitCount + 3) / 4)
        for d in 0..<digits {
            let nibble = UInt8(truncatingIfNeeded: v >> (4 * UInt64(digits - 1 - d))) & 0xf
            buf[i + d] = nibble < 10 ? 48 + nibble : 87 + nibble
        }
        i += digits
    }

    /// `prefix` followed by `v` in hex.
    public static func string(_ prefix: [UInt8], _ v: UInt64) -> String {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: prefix.count + 16) { buf in
            var i = 0
            for b in prefix { buf[i] = b; i += 1 }
            write(v, to: buf, at: &i)
            return String(decoding: UnsafeBufferPointer(rebasing: buf[0..<i]), as: UTF8.self)
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: UInt64 = 0
    func next() -> UInt64 { lock.withLock { value += 1; return value } }
}

extension AuditEvent {
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
        var out: [UInt8] = []
        JSONWriter.appendTime(date, to: &out)
        return String(decoding: out.dropFirst().dropLast(), as: UTF8.self)
    }

    /// Parses RFC 3339 times (`2026-11-21T19:06:21.123456Z`, `...+01:00`), keeping every
    /// fractional digit: Foundation's ISO 8601 parser stops at milliseconds.
    public static func parse(_ s: String) -> Date? {
        let b = Array(s.utf8)
        func num(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= b.count else { return nil }
            var v = 0
            for c in b[r] {
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
              let year = num(0..<4), let month = num(5..<7), let day = num(8..<10),
              let hour = num(11..<13), let minute = num(14..<16), let second = num(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            if i == start { return nil }
        }
        var offset = 0
        guard i < b.count else { return nil }
        switch b[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard i + 1 == b.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard i + 6 == b.count, b[i + 3] == UInt8(ascii: ":"), let oh = num((i + 1)..<(i + 3)),
                  let om = num((i + 4)..<(i + 6)) else { return nil }
            offset = (oh * 3600 + om * 60) * (b[i] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month - 1)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        t.tm_sec = Int32(second)
        let secs = timegm(&t)
        return Date(timeIntervalSince1970: Double(secs - offset) + fraction)
    }
}
