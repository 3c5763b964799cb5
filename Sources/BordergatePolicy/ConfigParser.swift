import BordergateMasking
import BordergateRegions
import Foundation
import Yams

/// A problem in a config file: the file, where in it, what is wrong and what is expected (one line,
/// `file:line:column: problem`), and errno when the file could not be read.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Location: Sendable, Equatable {
        case none
        case position(line: Int, column: Int)
        case byteOffset(Int)
    }
    public var path: String
    public var location: Location
    /// What is wrong and what was expected.
    public var problem: String
    public var errno: Int32?

    public init(path: String, location: Location = .none, problem: String, errno: Int32? = nil) {
        self.path = path
        self.location = location
        self.problem = problem
        self.errno = errno
    }

    public var description: String {
        let line: String
        switch location {
        case .none: line = "\(path): \(problem)"
        case .position(let l, let column): line = "\(path):\(l):\(column): \(problem)"
        case .byteOffset(let n): line = "\(path): at byte \(n): \(problem)"
        }
        // Line breaks quoted from the file (a CR inside a value) would split the one line.
        return String(line.map { $0.isNewline ? " " : $0 })
    }

}

/// Reads `/etc/bordergate/config.yaml` (or `--config`): tables, regions, groups, policies, cgroups.
public enum ConfigParser {
    public static func load(path: String) throws -> BordergateConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            // FileManager does not say why; access(2) does.
            let code: Int32? = access(path, R_OK) == 0 ? nil : errno
            let why = code.map { String(cString: strerror($0)).lowercased() } ?? "unreadable"
            throw ConfigError(path: path, problem: "cannot read the config file (\(why)); check the path, or name no config file for the built-in policy",
                              errno: code)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: path, location: .position(line: 1, column: 1), problem: "the file is not UTF-8 text; expected a YAML config")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws -> BordergateConfig {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw describe(e, path: path)
        } catch {
            throw ConfigError(path: path, problem: "\(error)")
        }
        guard let root = node else {
            throw ConfigError(path: path, location: .position(line: 1, column: 1), problem: "the file is empty; expected a mapping with 'policies:'")
        }
        return try Reader(path: path).config(root)
    }

    /// `30d`, `12h`, `90m`, `45s`, `2w`: a whole number and a unit, in seconds.
    public static func duration(_ text: String) -> TimeInterval? {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard let unit = s.last, let n = UInt64(s.dropLast()), n <= 1_000_000_000 else { return nil }
        let scale: Double
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86400
        case "w": scale = 7 * 86400
        default: return nil
        }
        return Double(n) * scale
    }

    /// `2GiB`, `500MiB`, `1GB`, `64KiB`, `4096` (bytes): binary units are powers of 1024, decimal
    /// ones of 1000. Nil for anything else, or past 2^63.
    public static func byteSize(_ text: String) -> UInt64? {
        let s = text.trimmingCharacters(in: .whitespaces)
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let n = UInt64(digits) else { return nil }
        let unit = s.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let scale: UInt64
        switch unit {
        case "", "B": scale = 1
        case "KB", "kB": scale = 1000
        case "MB": scale = 1000 * 1000
        case "GB": scale = 1000 * 1000 * 1000
        case "TB": scale = 1000 * 1000 * 1000 * 1000
        case "KiB": scale = 1 << 10
        case "MiB": scale = 1 << 20
        case "GiB": scale = 1 << 30
        case "TiB": scale = 1 << 40
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        guard !overflow, v <= UInt64(Int64.max) else { return nil }
        return v
    }

    static func describe(_ e: YamlError, path: String) -> ConfigError {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let ctx = context.map { " (\($0.text))" } ?? ""
            return ConfigError(path: path, location: .position(line: mark.line, column: mark.column),
                               problem: "YAML syntax: \(problem)\(ctx); expected well-formed YAML")
        case .reader(let problem, let offset, _, _):
            return ConfigError(path: path, problem: "YAML reader: \(problem) at byte \(offset ?? 0); expected UTF-8 text")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(path: path, location: .position(line: context.mark.line, column: context.mark.column),
                               problem: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in this mapping; expected each key once")
        default:
            return ConfigError(path: path, problem: "YAML: \(e)")
        }
    }

    struct Reader {
        let path: String

        func at(_ n: Node) -> String {
            guard let m = n.mark else { return path }
            return "\(path):\(m.line):\(m.column)"
        }

        func fail(_ n: Node, _ what: String) -> ConfigError {
            ConfigError(path: path, location: n.mark.map { .position(line: $0.line, column: $0.column) } ?? .none, problem: what)
        }

        /// An error at a rule, whose origin ``at(_:)`` wrote as path:line:column.
        func fail(rule r: Rule, _ what: String) -> ConfigError {
            let parts = r.origin.split(separator: ":").suffix(2).compactMap { Int($0) }
            return ConfigError(path: path, location: parts.count == 2 ? .position(line: parts[0], column: parts[1]) : .none, problem: what)
        }

        func mapping(_ n: Node, _ what: String) throws -> [(String, Node, Node)] {
            guard let m = n.mapping else { throw fail(n, "\(what) must be a mapping (key: value)") }
            var seen = Set<String>()
            var out: [(String, Node, Node)] = []
            for (k, v) in m {
                guard let key = k.scalar?.string else { throw fail(k, "\(what): keys must be plain words") }
                if !seen.insert(key).inserted { throw fail(k, "'\(key)' appears twice in \(what); expected each key once") }
                out.append((key, k, v))
            }
            return out
        }

        func string(_ n: Node, _ what: String) throws -> String {
            guard let s = n.scalar?.string, !s.isEmpty else { throw fail(n, "\(what) must be a non-empty string") }
            return s
        }

        func strings(_ n: Node, _ what: String) throws -> [String] {
            if n.scalar != nil { return [try string(n, what)] }
            guard let seq = n.sequence else { throw fail(n, "\(what) must be a string or a list of strings") }
            let out = try seq.map { try string($0, what) }
            if out.isEmpty { throw fail(n, "\(what) is an empty list; expected at least one entry") }
            return out
        }

        func choice<T: RawRepresentable>(_ n: Node, _ what: String, _: T.Type) throws -> T where T.RawValue == String {
            let s = try string(n, what)
            guard let v = T(rawValue: s) else {
                throw fail(n, "\(what) is '\(s)'; expected one of \(allValues(T.self))")
            }
            return v
        }

        func allValues<T>(_ t: T.Type) -> String {
            switch t {
            case is PolicyAction.Type: return "allow, deny"
            case is Policy.Mode.Type: return "enforce, audit"
            case is Policy.Inspect.Type: return "all, needed"
            case is MaskStrategy.Type: return MaskStrategy.allCases.map(\.rawValue).joined(separator: ", ")
            case is MaskPolicy.OnError.Type: return "block, pass"
            case is TLSMode.Type: return "intercept, passthrough"
            default: return "a known value"
            }
        }

        func config(_ root: Node) throws -> BordergateConfig {
            var c = BordergateConfig(path: path, defaultPolicy: "")
            var defaultNode: Node?
            var cgroupsNode: Node?
            for (key, k, v) in try mapping(root, "the config file") {
                switch key {
                case "tables":
                    guard let seq = v.sequence else { throw fail(v, "tables must be a list of {path, format, name}") }
                    c.tables = try seq.map(table)
                case "regions":
                    for (region, _, country) in try mapping(v, "regions") {
                        let cc = try string(country, "the country of region \(region)").uppercased()
                        guard cc.count == 2, cc.allSatisfy({ $0.isLetter && $0.isASCII }) else {
                            throw fail(country, "region \(region) maps to '\(cc)'; expected a two-letter country code (ISO 3166)")
                        }
                        c.regions[region] = cc
                    }
                case "groups":
                    for (group, _, members) in try mapping(v, "groups") {
                        let list = try strings(members, "the countries of group \(group)").map { $0.uppercased() }
                        for cc in list where cc.count != 2 {
                            throw fail(members, "group \(group) lists '\(cc)'; expected two-letter country codes")
                        }
                        c.groups[group] = list
                    }
                case "default-policy":
                    c.defaultPolicy = try string(v, "default-policy")
                    defaultNode = v
                case "policies":
                    for (name, k, body) in try mapping(v, "policies") {
                        guard let first = name.first, first.isLetter || first.isNumber else {
                            throw fail(k, "policy name '\(name)' must start with a letter or digit")
                        }
                        c.policies[name] = try policy(name, body)
                        c.policyOrder.append(name)
                    }
                case "cgroups":
                    cgroupsNode = v
                case "maskers":
                    for (name, nk, pattern) in try mapping(v, "maskers") {
                        guard BuiltinDetector(rawValue: name) == nil, name != "all" else {
                            throw fail(nk, "masker '\(name)' has the name of a built-in detector; expected a name of its own")
                        }
                        let text = try string(pattern, "the pattern of masker \(name)")
                        do {
                            c.maskers[name] = try CustomDetector(name: name, pattern: text)
                        } catch {
                            throw fail(pattern, "masker \(name): '\(text)' is not a regular expression (\(error)); expected e.g. 'EMP-[0-9]{6}'")
                        }
                    }
                case "recording":
                    c.recording = try recording(v)
                case "tls":
                    c.tls = try tlsSettings(v)
                case "export":
                    c.export = try export(v)
                case "proxy":
                    c.proxy = try proxy(v)
                case "audit":
                    c.audit = try audit(v)
                case "metrics":
                    c.metrics = try metrics(v)
                default:
                    throw fail(k, "unknown key '\(key)'; expected tables, regions, groups, default-policy, policies, cgroups, maskers, recording, tls, export, proxy, audit or metrics")
                }
            }
            guard !c.policyOrder.isEmpty else {
                throw fail(root, "no policies defined; expected 'policies:' with at least one named policy")
            }
            if let defaultNode {
                guard c.policies[c.defaultPolicy] != nil else {
                    throw fail(defaultNode, "default-policy names '\(c.defaultPolicy)', which is not defined; expected one of \(c.policyOrder.joined(separator: ", "))")
                }
            } else {
                c.defaultPolicy = c.policyOrder[0]
            }
            if let cgroupsNode {
                for (cg, _, pol) in try mapping(cgroupsNode, "cgroups") {
                    let name = try string(pol, "the policy of cgroup \(cg)")
                    guard c.policies[name] != nil else {
                        throw fail(pol, "cgroup \(cg) names policy '\(name)', which is not defined; expected one of \(c.policyOrder.joined(separator: ", "))")
                    }
                    c.cgroups.append((cg, name))
                }
            }
            // Names a rule uses must mean something: a typo in a country would silently match nothing.
            let catalog = c.catalog()
            for name in c.policyOrder {
                try checkNames(c.policies[name]!, catalog: catalog, root: root)
                try checkMaskers(c.policies[name]!, maskers: c.maskers)
            }
            return c
        }

        func recording(_ n: Node) throws -> RecordingConfig {
            var r = RecordingConfig()
            if n.null != nil { return r }
            for (key, k, v) in try mapping(n, "recording") {
                switch key {
                case "retain":
                    let s = try string(v, "retain")
                    guard let d = ConfigParser.duration(s), d > 0 else {
                        throw fail(v, "retain is '\(s)'; expected a duration such as 30d, 12h or 90m")
                    }
                    r.retain = d
                case "max-size", "max-session-body":
                    let s = try string(v, key)
                    guard let b = ConfigParser.byteSize(s), b > 0 else {
                        throw fail(v, "\(key) is '\(s)'; expected a size such as 2GiB, 500MiB or 1GB")
                    }
                    if key == "max-size" { r.maxBytes = b } else { r.maxSessionBodyBytes = b }
                default:
                    throw fail(k, "unknown key '\(key)' in recording; expected retain, max-size or max-session-body")
                }
            }
            return r
        }

        func proxy(_ n: Node) throws -> ProxyConfig {
            var p = ProxyConfig()
            if n.null != nil { return p }
            for (key, k, v) in try mapping(n, "proxy") {
                switch key {
                case "max-connections-per-cgroup", "max-connections-per-uid":
                    let s = try string(v, key)
                    guard let limit = UInt32(s), limit <= 1 << 24 else {
                        throw fail(v, "\(key) is '\(s)'; expected a number of connections such as 4096 (0: no limit)")
                    }
                    if key == "max-connections-per-cgroup" { p.maxConnectionsPerCgroup = limit } else { p.maxConnectionsPerUID = limit }
                case "drain":
                    let s = try string(v, key)
                    if s == "0" {
                        p.drainSeconds = 0
                    } else {
                        guard let d = ConfigParser.duration(s), d <= 3600 else {
                            throw fail(v, "drain is '\(s)'; expected a duration such as 10s or 2m (at most 1h), or 0")
                        }
                        p.drainSeconds = d
                    }
                default:
                    throw fail(k, "unknown key '\(key)' in proxy; expected max-connections-per-cgroup, max-connections-per-uid or drain")
                }
            }
            return p
        }

        func table(_ n: Node) throws -> BordergateConfig.TableSource {
            var src = BordergateConfig.TableSource(path: "", origin: at(n))
            if n.scalar != nil { src.path = try string(n, "a table path") }
            else { for (key, k, v) in try mapping(n, "a table") {
                switch key {
                case "path": src.path = try string(v, "path")
                case "name": src.name = try string(v, "name")
                case "format":
                    let f = try string(v, "format")
                    guard let fmt = RegionTableFormat(rawValue: f) else {
                        throw fail(v, "format is '\(f)'; expected one of \(RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    src.format = fmt
                default: throw fail(k, "unknown key '\(key)' in a table; expected path, format or name")
                }
            } }
            if src.path.isEmpty { throw fail(n, "a table needs 'path:'") }
            if !src.path.hasPrefix("/") {
                // relative to the config file, as operators expect of include-like paths
                src.path = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(src.path)
            }
            return src
        }

        func policy(_ name: String, _ n: Node) throws -> Policy {
            var p = Policy(name: name)
            p.origin = at(n)
            if n.scalar?.string == "" || n.null != nil { return p }
            for (key, k, v) in try mapping(n, "policy \(name)") {
                switch key {
                case "mode": p.mode = try choice(v, "mode", Policy.Mode.self)
                case "inspect": p.inspect = try choice(v, "inspect", Policy.Inspect.self)
                case "unknown": p.unknown = try choice(v, "unknown", PolicyAction.self)
                case "loopback": p.loopback = try choice(v, "loopback", PolicyAction.self)
                case "private": p.privateNetworks = try choice(v, "private", PolicyAction.self)
                case "default": p.fallback = try choice(v, "default", PolicyAction.self)
                case "allow", "deny":
                    guard let seq = v.sequence else {
                        throw fail(v, "\(key) must be a list of rules such as '- country: DE' or '- host: \"*.example.com\"'")
                    }
                    let rules = try seq.map { try rule($0, in: "\(key) of policy \(name)") }
                    if key == "allow" { p.allow = rules } else { p.deny = rules }
                case "mask": p.mask = try mask(v, policy: name)
                case "record":
                    guard let b = v.scalar.flatMap({ Bool.construct(from: $0) }) else {
                        throw fail(v, "record is '\(v.scalar?.string ?? "not a scalar")'; expected true or false")
                    }
                    p.record = b
                case "tls": p.tls = try choice(v, "tls", TLSMode.self)
                case "sql": p.sql = try sqlPolicy(v, policy: name)
                default:
                    throw fail(k, "unknown key '\(key)' in policy \(name); expected mode, inspect, unknown, loopback, private, default, allow, deny, mask, record, sql or tls")
                }
            }
            return p
        }

        func mask(_ n: Node, policy name: String) throws -> MaskPolicy {
            var m = MaskPolicy()
            m.origin = at(n)
            if n.scalar?.string == "" || n.null != nil { return m }
            for (key, k, v) in try mapping(n, "mask of policy \(name)") {
                switch key {
                case "detectors":
                    if v.scalar?.string == "all" { break }
                    var builtin = Set<BuiltinDetector>()
                    var custom: [String] = []
                    for d in try strings(v, "detectors") {
                        if let b = BuiltinDetector(rawValue: d) { builtin.insert(b) } else { custom.append(d) }
                    }
                    m.detectors = builtin
                    m.custom = custom
                    m.allMaskers = false
                    m.origin = at(v)
                case "strategy": m.strategy = try choice(v, "strategy", MaskStrategy.self)
                case "fields": m.fields = try strings(v, "fields")
                case "headers": m.headers = try strings(v, "headers").map { $0.lowercased() }
                case "on-error": m.onError = try choice(v, "on-error", MaskPolicy.OnError.self)
                default:
                    throw fail(k, "unknown key '\(key)' in mask of policy \(name); expected detectors, strategy, fields, headers or on-error")
                }
            }
            return m
        }

        /// A detector a policy names must be built in or defined under `maskers:`: a typo would
        /// silently mask nothing.
        func checkMaskers(_ p: Policy, maskers: [String: CustomDetector]) throws {
            guard let m = p.mask else { return }
            for d in m.custom where maskers[d] == nil {
                let parts = m.origin.split(separator: ":").suffix(2).compactMap { Int($0) }
                throw ConfigError(path: path, location: parts.count == 2 ? .position(line: parts[0], column: parts[1]) : .none,
                                  problem: "policy \(p.name) masks with '\(d)', which is neither a built-in detector (\(BuiltinDetector.allCases.map(\.rawValue).joined(separator: ", "))) nor defined under 'maskers:'")
            }
        }

        func rule(_ n: Node, in what: String) throws -> Rule {
            var target: Rule.Target?
            var exe: String?
            var uid: UInt32?
            func setTarget(_ t: Rule.Target, _ k: Node) throws {
                if target != nil { throw fail(k, "a rule in \(what) names two kinds of destination; expected one of region, country, jurisdiction or host per rule") }
                target = t
            }
            for (key, k, v) in try mapping(n, "a rule in \(what)") {
                switch key {
                case "region", "regions": try setTarget(.regions(try strings(v, key)), k)
                case "country", "countries": try setTarget(.countries(try strings(v, key).map { $0.uppercased() }), k)
                case "jurisdiction", "jurisdictions": try setTarget(.jurisdictions(try strings(v, key)), k)
                case "host", "hosts":
                    let globs = try strings(v, key).map { pattern -> HostnameGlob in
                        guard let g = HostnameGlob(pattern) else {
                            throw fail(v, "'\(pattern)' is not a hostname pattern; expected names like api.example.com or *.example.com (letters, digits, '-', '.', '*')")
                        }
                        return g
                    }
                    try setTarget(.hosts(globs), k)
                case "exe": exe = try string(v, "exe")
                case "uid":
                    guard let s = v.scalar?.string, let u = UInt32(s) else { throw fail(v, "uid must be a number") }
                    uid = u
                case "process":
                    for (pk, pkn, pv) in try mapping(v, "process") {
                        switch pk {
                        case "exe": exe = try string(pv, "exe")
                        case "uid":
                            guard let s = pv.scalar?.string, let u = UInt32(s) else { throw fail(pv, "uid must be a number") }
                            uid = u
                        default: throw fail(pkn, "unknown key '\(pk)' in process; expected exe or uid")
                        }
                    }
                default:
                    throw fail(k, "unknown key '\(key)' in a rule; expected region, country, jurisdiction, host, exe, uid or process")
                }
            }
            guard let target else {
                throw fail(n, "a rule in \(what) names no destination; expected one of region, country, jurisdiction or host")
            }
            var r = Rule(target: target, exe: exe, uid: uid)
            r.origin = at(n)
            return r
        }

        func checkNames(_ p: Policy, catalog: RegionCatalog, root: Node) throws {
            for r in p.allow + p.deny {
                switch r.target {
                case .countries(let cs):
                    for c in cs where !catalog.isKnownCountry(c) {
                        throw fail(rule: r, "'\(c)' is not a country code; expected ISO 3166 alpha-2, such as DE or US")
                    }
                case .jurisdictions(let js):
                    for j in js where catalog.groups[j] == nil && !catalog.isKnownCountry(j) {
                        throw fail(rule: r, "'\(j)' is not a known jurisdiction; expected one of \(catalog.groups.keys.sorted().joined(separator: ", ")), a country code, or a group defined under 'groups:'")
                    }
                case .regions, .hosts:
                    break // regions come from tables, which may not be loaded yet
                }
            }
        }
    }
}
