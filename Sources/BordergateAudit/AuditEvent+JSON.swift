import Foundation

/// Writes events as JSON by hand: fields in the order DESIGN.md shows them (Foundation's encoder
/// on Linux orders keys at random), absent fields left out, and no per-event encoder allocations
/// on the path that records every connection.
extension AuditEvent {
    public func jsonLine() -> Data {
        var w = JSONWriter()
        w.open()
        w.field("time", AuditTime.format(time))
        w.field("id", id)
        w.field("type", type.rawValue)
        w.field("verdict", verdict)
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
                w.raw("[" + j.map { JSONWriter.quote($0) }.joined(separator: ",") + "]")
            }
            w.close()
        }
        w.field("protocol", self.protocol)
        w.field("policy", policy)
        w.field("connection", connection)
        if let b = bytes {
            w.key("bytes")
            w.raw("{\"sent\":\(b.sent),\"received\":\(b.received)}")
        }
        if let ms = duration_ms { w.key("duration_ms"); w.raw(JSONWriter.number(ms)) }
        w.field("end", end)
        w.field("error", error)
        w.field("message", message)
        w.close()
        return Data(w.out.utf8)
    }
}

struct JSONWriter {
    var out = ""
    private var first = [true]

    init() { out.reserveCapacity(512) }

    mutating func open() {
        out += "{"
        first.append(true)
    }

    mutating func close() {
        out += "}"
        first.removeLast()
    }

    mutating func key(_ k: String) {
        if first[first.count - 1] { first[first.count - 1] = false } else { out += "," }
        out += "\"" + k + "\":"
    }

    mutating func raw(_ s: String) { out += s }

    mutating func field(_ k: String, _ v: String?) {
        guard let v else { return }
        key(k)
        out += Self.quote(v)
    }

    mutating func field(_ k: String, _ v: Int?) {
        guard let v else { return }
        key(k)
        out += String(v)
    }

    static func number(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return d.isFinite ? "\(d)" : "0"
    }

    static func quote(_ s: String) -> String {
        var r = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": r += "\\\""
            case "\\": r += "\\\\"
            case "\n": r += "\\n"
            case "\r": r += "\\r"
            case "\t": r += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                r += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: r.unicodeScalars.append(u)
            }
        }
        return r + "\""
    }
}
