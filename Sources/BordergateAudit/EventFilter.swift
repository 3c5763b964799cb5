import Foundation

/// Which events an operator asked for (`bordergate events --pid --cgroup --verdict --since`).
public struct EventFilter: Codable, Sendable, Equatable {
    public var since: Date?
    public var pid: Int?
    /// A cgroup and everything below it, hierarchy-relative (`/ci` matches `/ci/job-17`).
    public var cgroup: String?
    public var verdict: Verdict?
    public var type: AuditEvent.Kind?
    /// A region, country or jurisdiction of the destination (`aws:eu-west-1`, `DE`, `EU`).
    public var region: String?
    /// A hostname glob (`*.example.com`), matched against the destination's host.
    public var host: String?
    /// Events up to this time only (`events --until`).
    public var until: Date?
    /// Filters an event must match none of (`events --not --verdict pass`).
    public var not: [EventFilter]?

    public init(since: Date? = nil, pid: Int? = nil, cgroup: String? = nil, verdict: Verdict? = nil, type: AuditEvent.Kind? = nil,
                region: String? = nil, host: String? = nil) {
        self.since = since
        self.pid = pid
        self.cgroup = cgroup
        self.verdict = verdict
        self.type = type
        self.region = region
        self.host = host
    }

    public var isEmpty: Bool { self == EventFilter() }

    public func matches(_ e: AuditEvent) -> Bool {
        if let not, not.contains(where: { !$0.isEmpty && $0.matches(e) }) { return false }
        if let since, e.time < since { return false }
        if let until, e.time > until { return false }
        if let pid, e.process?.pid != pid { return false }
        if let verdict, e.verdict != verdict { return false }
        if let type, e.type != type { return false }
        if let region {
            guard let d = e.destination else { return false }
            if d.region != region && d.country != region && !(d.jurisdictions ?? []).contains(region) { return false }
        }
        if let host {
            guard let h = e.destination?.host else { return false }
            if fnmatch(host.lowercased(), h.lowercased(), 0) != 0 { return false }
        }
        if let cgroup {
            guard let c = e.process?.cgroup else { return false }
            let base = cgroup.count > 1 && cgroup.hasSuffix("/") ? String(cgroup.dropLast()) : cgroup
            if !(c == base || base == "/" || c.hasPrefix(base + "/")) { return false }
        }
        return true
    }

    /// Parses `--since`: a duration back from `now` (`90s`, `15m`, `2h`, `7d`, `1h30m`) or an
    /// RFC 3339 time.
    public static func parseSince(_ text: String, now: Date = Date()) -> Date? {
        if let d = AuditTime.parse(text) { return d }
        return parseDuration(text).map { now.addingTimeInterval(-$0) }
    }

    /// "90s", "15m", "2h", "1d", or a sum such as "1h30m", in seconds.
    public static func parseDuration(_ text: String) -> TimeInterval? {
        var total: Double = 0
        var number = ""
        var sawUnit = false
        for ch in text {
            if ch.isNumber || ch == "." {
                number.append(ch)
                continue
            }
            guard let v = Double(number) else { return nil }
            switch ch {
            case "s": total += v
            case "m": total += v * 60
            case "h": total += v * 3600
            case "d": total += v * 86400
            default: return nil
            }
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit else { return nil }
        return total
    }
}
