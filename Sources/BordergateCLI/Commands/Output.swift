import BordergateAudit
import BordergatePolicy
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
            print("  \(g.cgroup)  policy \(g.policy), \(g.processes) process(es), id \(g.cgroupID)")
            for grant in g.grants ?? [] { print("    grant \(grant)") }
        }
        print("kernel      " + counters(s.kernel))
        print("proxy       " + counters(s.proxyCounters))
        print("audit       " + counters(s.audit) + " live_readers=\(s.subscribers)")
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
    }
}
