import Foundation

/// Writes events as JSON by hand: fields in the order README's "The audit event" shows them (Foundation's encoder
/// on Linux orders keys at random), absent fields left out, and no per-event encoder allocations
/// on the path that records every connection.
extension AuditEvent {
    public func jsonLine() -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        appendJSON(to: &out)
        return Data(out)
    }

    /// Appends the event's JSON (no newline) to `out`: the audit writer encodes a whole batch
    /// into one buffer this way.
    public func appendJSON(to out: inout [UInt8]) {
        var w = JSONWriter(out: out)
        out = []  // `w` holds the only reference: appends do not copy
        w.open()
        w.time("time", time)
        w.field("id", id)
        w.field("type", type.rawValue)
        w.field("verdict", verdict?.rawValue)
        w.field("reason", reason)
        if let p = process {
            w.key("process")
            w.open()
            w.field("pid", p.pid)
            w.field("ppid", p.ppid)
            w.field("uid", p.uid)
            w.field("user", p.user)
            w.field("comm", p.comm)
            w.field("exe", p.exe)
            w.field("cgroup", p.cgroup)
            w.close()
        }
        if let d = destination {
            w.key("destination")
            w.open()
            w.field("ip", d.ip)
            w.field("port", d.port)
            w.field("host", d.host)
            w.field("region", d.region)
            w.field("country", d.country)
            if let j = d.jurisdictions {
                w.key("jurisdictions")
                w.list(j)
            }
            w.close()
        }
        w.field("protocol", self.protocol?.rawValue)
        w.field("policy", policy)
        w.field("rule", rule)
        w.field("connection", connection)
        if let b = bytes {
            w.key("bytes")
            w.open()
            w.field("sent", b.sent)
            w.field("received", b.received)
            w.close()
        }
        if let ms = duration_ms { w.key("duration_ms"); w.number(ms) }
        w.field("end", end?.rawValue)
        w.field("error", error)
        w.field("message", message)
        if let s = session {
            w.key("session")
            w.open()
            w.field("id", s.id)
            w.field("entries", s.entries)
            w.field("bytes", s.bytes)
            w.field("sha256", s.sha256)
            w.close()
        }
        if let m = masked {
            w.key("masked")
            w.open()
            // Sorted: the same counts are the same bytes (the chain hashes them).
            for (k, v) in m.sorted(by: { $0.key < $1.key }) { w.field(dynamic: k, v) }
            w.close()
        }
        w.field("request", request)
        if let count { w.field("count", count) }
        w.close()
        out = w.bytes
    }
}

/// Writes JSON as UTF-8 bytes: on the path that records every connection, String appends and
/// their bridging cost more than the rest of the event.
struct JSONWriter {
    private(set) var bytes: [UInt8]
    /// One bit per open object, innermost lowest: set while it has no member yet (objects nest
    /// a few levels deep; an array of flags would be an allocation per event).
    private var fresh: UInt64 = 0

    init(out: [UInt8] = []) { bytes = out }

    mutating func open() {
        bytes.append(UInt8(ascii: "{"))
        fresh = fresh << 1 | 1
    }

    mutating func close() {
        bytes.append(UInt8(ascii: "}"))
        fresh >>= 1
    }

    mutating func key(_ k: StaticString) {
        if fresh & 1 == 1 { fresh &= ~1 } else { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        k.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    /// A key that is data (a detector's name), quoted as any string.
    mutating func key(dynamic k: String) {
        if fresh & 1 == 1 { fresh &= ~1 } else { bytes.append(UInt8(ascii: ",")) }
        Self.appendQuoted(k, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func field(dynamic k: String, _ v: Int) {
        key(dynamic: k)
        Self.appendInteger(Int64(v), to: &bytes)
    }

    mutating func list(_ items: [String]) {
        bytes.append(UInt8(ascii: "["))
        for (i, item) in items.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendQuoted(item, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func number(_ d: Double) {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 {
            Self.appendInteger(Int64(d), to: &bytes)
        } else {
            bytes.append(contentsOf: Self.number(d).utf8)
        }
    }

    mutating func field(_ k: StaticString, _ v: String?) {
        guard let v else { return }
        key(k)
        Self.appendQuoted(v, to: &bytes)
    }

    mutating func field(_ k: StaticString, _ v: Int?) {
        guard let v else { return }
        key(k)
        Self.appendInteger(Int64(v), to: &bytes)
    }

    mutating func field(_ k: StaticString, _ v: UInt64) {
        key(k)
        Self.appendUnsigned(v, to: &bytes)
    }

    static func number(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return d.isFinite ? "\(d)" : "0"
    }

    static func appendInteger(_ v: Int64, to out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        appendUnsigned(v.magnitude, to: &out)
    }

    static func appendUnsigned(_ v: UInt64, to out: inout [UInt8], width: Int = 1) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        var x = v
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(48 + x % 10)
                x /= 10
                n += 1
            } while x > 0
            while n < width { d[n] = 48; n += 1 }
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(d[i]) }
        }
    }

    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings (paths, addresses, names) need no escaping: copy them whole.
        let plain = s.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if plain == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\\")); out.append(b)
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(b)
            case UInt8(ascii: "\n"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xf)])
            default: out.append(b) // UTF-8 passes through as it is
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 3339 UTC with microseconds, without Foundation formatters.
    static func appendTime(_ date: Date, to out: inout [UInt8]) {
        let t = date.timeIntervalSince1970
        var secs = time_t(t.rounded(.down))
        var micros = UInt64(((t - Double(secs)) * 1_000_000).rounded())
        if micros >= 1_000_000 { secs += 1; micros -= 1_000_000 }
        var tm = tm()
        gmtime_r(&secs, &tm)
        out.append(UInt8(ascii: "\""))
        appendUnsigned(UInt64(tm.tm_year + 1900), to: &out, width: 4)
        out.append(UInt8(ascii: "-"))
        appendUnsigned(UInt64(tm.tm_mon + 1), to: &out, width: 2)
        out.append(UInt8(ascii: "-"))
        appendUnsigned(UInt64(tm.tm_mday), to: &out, width: 2)
        out.append(UInt8(ascii: "T"))
        appendUnsigned(UInt64(tm.tm_hour), to: &out, width: 2)
        out.append(UInt8(ascii: ":"))
        appendUnsigned(UInt64(tm.tm_min), to: &out, width: 2)
        out.append(UInt8(ascii: ":"))
        appendUnsigned(UInt64(tm.tm_sec), to: &out, width: 2)
        out.append(UInt8(ascii: "."))
        appendUnsigned(micros, to: &out, width: 6)
        out.append(UInt8(ascii: "Z"))
        out.append(UInt8(ascii: "\""))
    }

    mutating func time(_ k: StaticString, _ date: Date) {
        key(k)
        Self.appendTime(date, to: &bytes)
    }
}
