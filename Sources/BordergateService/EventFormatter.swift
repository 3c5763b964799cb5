import BordergateAudit
import Foundation

/// How events look on a terminal (`-o compact`, the `exec` summary).
public enum EventFormatter {
    public static func compact(_ e: AuditEvent) -> String {
        let time = AuditTime.format(e.time).dropLast(4) + "Z" // milliseconds are enough on screen
        var parts = [String(time), e.type.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)]
        if let v = e.verdict?.rawValue { parts.append(v.padding(toLength: 8, withPad: " ", startingAt: 0)) }
        if let p = e.process {
            var who = "\(p.comm)[\(p.pid)]"
            if let exe = p.exe, !exe.hasSuffix("/" + p.comm) { who += " \(exe)" }
            if let user = p.user { who += " \(user)" } else { who += " uid=\(p.uid)" }
            parts.append(who)
            parts.append(p.cgroup)
        }
        if let d = e.destination {
            var dest = "→ \(endpoint(d.ip, d.port))"
            if let h = d.host { dest += " (\(h))" }
            if let r = d.region { dest += " [\(r)]" }
            if e.type == .connect, e.protocol == .udp { dest += " udp" }
            parts.append(dest)
        }
        if let n = e.count { parts.append("×\(n)") } // an aggregate of refusals, or what a drop lost
        // Refusals say why; so do verdicts an auditor will want explained.
        if e.type == .connect, e.verdict?.isRefusalOrAudit == true, let r = e.reason { parts.append("— \(r)") }
        if e.type == .close {
            if let b = e.bytes { parts.append("sent \(bytes(b.sent)) received \(bytes(b.received))") }
            if let ms = e.duration_ms { parts.append(duration(ms)) }
            if let end = e.end { parts.append(end.rawValue) }
        }
        if e.type == .drop, let r = e.reason { parts.append("— \(r)") }
        if let err = e.error { parts.append("error: \(err)") }
        if let m = e.message { parts.append(m) }
        return parts.joined(separator: " ")
    }

    public static func endpoint(_ ip: String, _ port: Int) -> String {
        ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    public static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    public static func duration(_ ms: Double) -> String {
        ms < 1000 ? String(format: "%.1f ms", ms) : String(format: "%.2f s", ms / 1000)
    }

    /// The end-of-run summary of `exec`: one line per connection, joined by connection id.
    public static func summary(_ events: [AuditEvent], command: String) -> String {
        var order: [String] = []
        var connects: [String: AuditEvent] = [:]
        var closes: [String: AuditEvent] = [:]
        for e in events {
            guard let id = e.connection else { continue }
            if e.type == .connect, connects[id] == nil { connects[id] = e; order.append(id) }
            if e.type == .close { closes[id] = e }
        }
        var lines = ["bordergate: \(command) made \(order.count) connection\(order.count == 1 ? "" : "s")"]
        for id in order {
            guard let c = connects[id], let d = c.destination, let p = c.process else { continue }
            var line = "  \(p.comm)[\(p.pid)] → \(endpoint(d.ip, d.port))\(d.host.map { " (\($0))" } ?? "")\(c.protocol == .udp ? " udp" : "")  \(c.verdict?.rawValue ?? "")"
            if c.verdict?.isRefusalOrAudit == true, let r = c.reason { line += "  \(r)" }
            if let x = closes[id] {
                if let b = x.bytes { line += "  sent \(bytes(b.sent)), received \(bytes(b.received))" }
                if let ms = x.duration_ms { line += ", \(duration(ms))" }
                if let end = x.end { line += ", \(end.rawValue)" }
                if let err = x.error { line += ": \(err)" }
            } else if let err = c.error {
                line += "  \(err)"
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
