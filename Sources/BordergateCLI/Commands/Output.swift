import BordergateAudit
import BordergatePolicy
import BordergateRecording
import BordergateRegions
import BordergateService
import Foundation

/// Everything the CLI prints beyond a command's one-line answer: events, the status table, lookup
/// answers, errors. Commands decide what to show; how it looks is here.
enum Output {
    /// One line to stderr, prefixed with the program's name.
    static func error(_ text: String) {
        FileHandle.standardError.write(Data("bordergate: \(text)\n".utf8))
    }

    /// A note for a person on stderr (timings, warnings), without the prefix.
    static func note(_ text: String) {
        FileHandle.standardError.write(Data("\(text)\n".utf8))
    }

    /// One event; `line` is its JSON exactly as the log or the daemon had it. Unbuffered: a live
    /// stream piped to another tool must not sit in a buffer.
    static func event(_ e: AuditEvent, line: Data, as format: EventOutput) {
        var out = format == .json ? line : Data(EventFormatter.compact(e).utf8)
        out.append(UInt8(ascii: "\n"))
        FileHandle.standardOutput.write(out)
    }

    /// Pretty, sorted JSON of a value (`status -o json`).
    static func json<T: Encodable>(_ value: T) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        print(String(decoding: try enc.encode(value), as: UTF8.self))
    }

    /// `status` as a table for a terminal.
    static func status(_ s: DaemonStatus) {
        print("daemon      pid \(s.pid), version \(s.version), up since \(AuditTime.format(s.startedAt))")
        print("proxy       \(s.proxy.joined(separator: ", "))")
        print("pins        \(s.pinRoot)")
        print("audit log   \(s.auditLog)")
        print("cgroup v2   \(s.cgroupRoot)")
        print("programs    \(s.programs.joined(separator: " "))")
        if let c = s.config { print("config      \(c): policies \((s.policies ?? []).joined(separator: ", ")) (default \(s.defaultPolicy ?? "?"))") }
        for (i, t) in (s.tables ?? []).enumerated() { print((i == 0 ? "tables      " : "            ") + t) }
        if let k = s.kernelTables {
            let mem = k.filter { $0.key.hasPrefix("regions") || $0.key == "policy_rows" }.values.reduce(0, +)
            print("kernel maps \(k["ipv4_prefixes"] ?? 0) IPv4 + \(k["ipv6_prefixes"] ?? 0) IPv6 prefixes, \(k["kernel_classes"] ?? 0) verdict classes, \(String(format: "%.1f", Double(mem) / 1048576)) MiB (tries and policy rows)")
        }
        print("guarded     \(s.guards.count) cgroup(s)")
        for g in s.guards {
            print("  \(g.cgroup)  policy \(g.policy), \(g.processes) process(es)\(g.proxied.map { ", \($0) proxied" } ?? ""), id \(g.cgroupID)")
            for grant in g.grants ?? [] { print("    grant \(grant)") }
        }
        print("kernel      " + counters(s.kernel))
        print("proxy       " + counters(s.proxyCounters))
        print("audit       " + counters(s.audit) + " live_readers=\(s.subscribers)")
        if let p = s.auditProblem { print("AUDIT LOG   \(p)") }
        if let r = s.recordings { print("recordings  \(r)") }
        if let heap = s.heapInUse { print("memory      heap in use \(String(format: "%.1f", Double(heap) / 1048576)) MiB") }
    }

    private static func counters(_ c: [String: UInt64]) -> String {
        c.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// One address of `regions lookup`.
    static func lookup(_ address: String, _ answer: RegionAnswer?, as format: TextOrJSON) throws {
        switch format {
        case .json:
            var obj: [String: Any] = ["ip": address]
            if let answer {
                obj["region"] = answer.region
                obj["country"] = answer.country as Any? ?? NSNull()
                obj["jurisdictions"] = answer.jurisdictions
                obj["table"] = answer.table
                obj["prefix"] = answer.prefix.description
            } else {
                obj["region"] = NSNull()
            }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        case .text:
            if let answer {
                print("\(address)  region \(answer.region)  country \(answer.country ?? "-")  jurisdictions \(answer.jurisdictions.isEmpty ? "-" : answer.jurisdictions.joined(separator: ","))  table \(answer.table)  prefix \(answer.prefix)")
            } else {
                print("\(address)  unknown: no loaded table has it")
            }
        }
    }

    /// `policy check`: the file is fine; what it defines, and words for what is legal but odd.
    static func policyCheck(file: String, _ cfg: ResidencyConfig) {
        let c = cfg.config
        print("\(file): ok")
        let known = Set(cfg.database.regionClasses)
        for name in c.policyOrder {
            let p = c.policies[name]!
            print("  policy \(name)\(name == c.defaultPolicy ? " (default)" : ""): mode \(p.mode.rawValue), \(p.deny.count) deny and \(p.allow.count) allow rule(s), unknown regions \(p.unknown.rawValue), otherwise \(p.effectiveDefault.rawValue)")
            // A region no table has is legal (tables change) but worth a word.
            for r in p.allow + p.deny {
                if case .regions(let rs) = r.target {
                    for region in rs where !known.contains(region) {
                        print("  warning: \(r.origin): region \(region) is in no loaded table; the rule matches nothing yet")
                    }
                }
            }
        }
        for (cg, p) in c.cgroups { print("  cgroup \(cg) -> \(p)") }
        for t in cfg.tableNotes { print("  table \(t)") }
        print("  " + recordingSettings(c.recording))
    }
}

// MARK: Sessions

extension Output {
    /// `sessions list`: a table (ID, START, DURATION, PID, EXE, DEST, PROTOCOL, ENTRIES, BYTES,
    /// MASKED) or one JSON object per session and line.
    static func sessions(_ sessions: [StoredSession], as format: TextOrJSON) throws -> String {
        switch format {
        case .json:
            return try sessions.map { s in
                let data = try JSONSerialization.data(withJSONObject: SessionExport.sessionObject(s),
                                                      options: [.sortedKeys, .withoutEscapingSlashes])
                return String(decoding: data, as: UTF8.self) + "\n"
            }.joined()
        case .text:
            let header = ["ID", "START", "DURATION", "PID", "EXE", "DEST", "PROTOCOL", "ENTRIES", "BYTES", "MASKED"]
            let rows = sessions.map { s -> [String] in
                [s.id, shortTime(s.startedAt), s.duration.map(duration) ?? "open", "\(s.process.pid)",
                 s.process.exe.map { ($0 as NSString).lastPathComponent } ?? s.process.comm, destination(s), s.protocol,
                 "\(s.entries)", s.bytes.map { size($0.sent + $0.received) } ?? "-", "\(s.masked)"]
            }
            if rows.isEmpty { return "no recorded sessions match\n" }
            return table([header] + rows)
        }
    }

    /// Columns padded to their widest cell, two spaces apart, like `kubectl get`.
    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        let widths = (0..<first.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// `sessions show`: what the session was, then each entry with its headers and bodies.
    /// Bodies past `bodyLimit` bytes are cut, with a word on how to see all of it.
    static func session(_ s: StoredSession, entries: [StoredEntry], bodyLimit: Int? = 4096) -> String {
        var out: [String] = []
        let p = s.process
        out.append("session   \(s.id)")
        out.append("process   \(p.exe ?? p.comm) (pid \(p.pid), uid \(p.uid)\(p.user.map { " \($0)" } ?? "")) in \(p.cgroup)")
        var place = [s.destination.ip]
        if let r = s.destination.region { place.append(r) }
        if let c = s.destination.country { place.append(c) }
        out.append("dest      \(destination(s)) (\(place.joined(separator: ", ")))")
        out.append("policy    \(s.policy), protocol \(s.protocol), \(s.content ? "content recorded" : "metadata only (no headers or bodies)")")
        let ended = s.endedAt.map { "\(AuditTime.format($0)) (\(duration($0.timeIntervalSince(s.startedAt))))" } ?? "still open"
        out.append("time      \(AuditTime.format(s.startedAt)) -> \(ended)\(s.ending.map { ", \($0)" } ?? "")")
        if let b = s.bytes { out.append("bytes     sent \(size(b.sent)), received \(size(b.received)); stored \(size(s.storedBytes))") }
        out.append("entries   \(s.entries), \(s.masked) value(s) masked")
        if let sha = s.sha256 { out.append("sha256    \(sha)") }
        for e in entries {
            out.append("")
            if e.kind == .sql {
                out += sqlTranscript(e, session: s)
                if let note = e.note { out.append("--   note: \(note)") }
                continue
            }
            out.append(entryLine(e, session: s))
            switch e.kind {
            case .http:
                if let h = e.requestHeaders { out += h.map { "    > \($0.name): \($0.value)" } }
                if let b = e.requestBody, !b.isEmpty { out.append(body(b, truncated: false, limit: bodyLimit)) }
                if let h = e.responseHeaders, e.status != nil { out += h.map { "    < \($0.name): \($0.value)" } }
                if let b = e.responseBody, !b.isEmpty { out.append(body(b, truncated: e.truncated, limit: bodyLimit)) }
            case .sql:
                for (i, v) in (e.sqlParameters ?? []).enumerated() { out.append("    $\(i + 1) = \(v.map { "'\($0)'" } ?? "NULL")") }
            }
            if let note = e.note { out.append("    note: \(note)") }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// A statement as an SQL transcript reads: the statement (normalised, as recorded), its
    /// parameters, then what came of it as a comment. `\connect` lines stay psql's meta-command.
    ///
    ///     SELECT count(*) FROM customers WHERE id > $1;
    ///     --   #3 +0.021s -> SELECT 1 (1 row)
    static func sqlTranscript(_ e: StoredEntry, session s: StoredSession) -> [String] {
        let text = e.sqlText ?? "-- ?"
        var out = [text.hasPrefix("\\") || text.hasPrefix("--") || text.hasSuffix(";") ? text : text + ";"]
        for (i, v) in (e.sqlParameters ?? []).enumerated() { out.append("--   $\(i + 1) = \(v.map { "'\($0)'" } ?? "NULL")") }
        var details: [String] = []
        if let rows = e.sqlRows, rows > 0 || (e.sqlOutcome ?? "").hasPrefix("SELECT") { details.append("\(rows) row\(rows == 1 ? "" : "s")") }
        if let g = e.sqlGuardrail { details.append("guardrail \(g)") }
        if e.maskedTotal > 0 { details.append("\(e.maskedTotal) masked: \(SessionExport.maskedText(e.masked))") }
        let at = String(format: "+%.3fs", e.startedAt.timeIntervalSince(s.startedAt))
        let took = String(format: "%.1f ms", e.finishedAt.timeIntervalSince(e.startedAt) * 1000)
        out.append("--   #\(e.seq) \(at) \(took) -> \(e.sqlOutcome ?? "?")" + (details.isEmpty ? "" : " (\(details.joined(separator: ", ")))"))
        return out
    }

    /// The first line `sessions replay` prints.
    static func sessionHeadline(_ s: StoredSession) -> String {
        "session \(s.id): \(s.process.exe ?? s.process.comm) (pid \(s.process.pid)) -> \(destination(s)) \(s.protocol), started \(AuditTime.format(s.startedAt))"
    }

    /// `#1 +0.010s GET /path -> 200 (1.2 KiB, 3 masked: email 2, credit-card 1)`.
    static func entryLine(_ e: StoredEntry, session s: StoredSession) -> String {
        let at = String(format: "+%.3fs", e.startedAt.timeIntervalSince(s.startedAt))
        var details: [String] = []
        let line: String
        switch e.kind {
        case .http:
            let answer = e.status.map { "\($0)" } ?? "no response"
            line = "#\(e.seq)  \(at)  \(e.method ?? "?") \(e.target ?? "?") -> \(answer)"
            if e.status != nil { details.append(size(e.responseBodyBytes)) }
        case .sql:
            line = "#\(e.seq)  \(at)  SQL \(e.sqlText ?? "?") -> \(e.sqlOutcome ?? "?")"
            if let rows = e.sqlRows { details.append("\(rows) row\(rows == 1 ? "" : "s")") }
            if let g = e.sqlGuardrail { details.append("guardrail \(g)") }
        }
        if e.maskedTotal > 0 { details.append("\(e.maskedTotal) masked: \(SessionExport.maskedText(e.masked))") }
        if e.truncated { details.append("truncated") }
        return details.isEmpty ? line : "\(line) (\(details.joined(separator: ", ")))"
    }

    /// A body indented under its headers: as text when it is text, else its size.
    static func body(_ b: [UInt8], truncated: Bool, limit: Int? = nil) -> String {
        guard SessionExport.textual(b) != nil else { return "    <\(b.count) bytes binary>" }
        var shown = b
        if let limit, b.count > limit {
            shown = Array(b.prefix(limit))
            while !shown.isEmpty && String(validating: shown, as: UTF8.self) == nil { shown.removeLast() } // whole characters
        }
        var text = String(decoding: shown, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .map { "    | " + $0 }.joined(separator: "\n")
        if shown.count < b.count { text += "\n    <\(b.count - shown.count) more bytes: --full shows all, export writes all>" }
        return truncated ? text + "\n    <truncated: the recording keeps \(size(UInt64(b.count)))>" : text
    }

    static func destination(_ s: StoredSession) -> String {
        let name = s.destination.host ?? (s.destination.ip.contains(":") ? "[\(s.destination.ip)]" : s.destination.ip)
        return "\(name):\(s.destination.port)"
    }

    /// `512 B`, `1.2 KiB`, `3.4 MiB`, `2.0 GiB`.
    static func size(_ n: UInt64) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return String(format: "%.1f %@", v, units[i])
    }

    /// `850ms`, `12.4s`, `3m04s`, `2h05m`.
    static func duration(_ t: TimeInterval) -> String {
        if t < 1 { return "\(Int((t * 1000).rounded()))ms" }
        if t < 60 { return String(format: "%.1fs", t) }
        let s = Int(t.rounded())
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }

    /// `policy check`'s line on the config's `recording:`.
    static func recordingSettings(_ r: RecordingConfig) -> String {
        let t = Int(r.retain)
        let retain = [(86400, "d"), (3600, "h"), (60, "m")].first { t >= $0.0 && t % $0.0 == 0 }.map { "\(t / $0.0)\($0.1)" } ?? "\(t)s"
        return "recording: retain \(retain), max-size \(size(r.maxBytes)), max-session-body \(size(r.maxSessionBodyBytes))"
    }

    /// `2026-12-04 18:50:15Z`: seconds are enough in a table.
    static func shortTime(_ d: Date) -> String {
        let full = AuditTime.format(d)
        return String(full.prefix(19)).replacingOccurrences(of: "T", with: " ") + "Z"
    }
}
