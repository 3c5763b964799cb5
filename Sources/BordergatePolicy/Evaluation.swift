import BordergateRegions
#if canImport(Glibc)
import Glibc
#endif

/// What is known about a destination when a verdict is due.
public struct DestinationFacts: Sendable, Equatable {
    public enum Special: String, Sendable { case loopback, `private` }
    /// The hostname, as far as it is known: the kernel never knows it; the proxy knows it after
    /// the first bytes (SNI, Host) or knows that there is none.
    public enum Host: Sendable, Equatable {
        case unknown
        case none
        case name(String)
    }

    public var address: String
    public var special: Special?
    /// nil: no table knows the address.
    public var region: String?
    public var country: String?
    public var jurisdictions: [String]
    public var host: Host

    public init(address: String, special: Special? = nil, region: String?, country: String?, jurisdictions: [String],
                host: Host = .unknown) {
        self.address = address
        self.special = special
        self.region = region
        self.country = country
        self.jurisdictions = jurisdictions
        self.host = host
    }

    /// "region aws:us-east-1 (US)", "country DE", "host api.example.com in country DE".
    public var description: String {
        var where_: String
        if let special { where_ = special == .loopback ? "loopback \(address)" : "private network address \(address)" }
        else if let region {
            if let country, country != region { where_ = "region \(region) (\(country))" }
            else if country != nil { where_ = "country \(region)" }
            else { where_ = "region \(region) (country unknown)" }
        } else { where_ = "\(address) (no region table knows it)" }
        if case .name(let h) = host { where_ = "host \(h) in " + where_ }
        return where_
    }
}

/// What is known about the process; nil fields are unknown (the kernel knows neither here).
public struct ProcessFacts: Sendable, Equatable {
    public var exe: String?
    public var uid: UInt32?
    public init(exe: String?, uid: UInt32?) {
        self.exe = exe
        self.uid = uid
    }
    public static let unknown = ProcessFacts(exe: nil, uid: nil)
}

/// The result of evaluating a policy: decided, or not decidable from what is known (the kernel
/// then hands the connection to the proxy, which knows the hostname and the process).
public enum PolicyOutcome: Sendable, Equatable {
    case decided(PolicyAction, rule: Int)
    case undecided(rule: Int)
}

/// Rule references shared by the kernel rows and the events: fixed slots first, then the rules in
/// evaluation order (grants, deny, allow).
public enum RuleRef {
    public static let loopback = 0
    public static let privateNetworks = 1
    public static let unknown = 2
    public static let fallback = 3
    public static let firstRule = 4
}

extension Policy {
    /// Grants are allow rules with a grant attached; they come first.
    public var orderedRules: [(action: PolicyAction, index: Int, rule: Rule)] {
        var out: [(PolicyAction, Int, Rule)] = []
        for (i, r) in allow.enumerated() where r.grant != nil { out.append((.allow, i, r)) }
        for (i, r) in deny.enumerated() { out.append((.deny, i, r)) }
        var k = 0
        for r in allow where r.grant == nil {
            out.append((.allow, k, r))
            k += 1
        }
        return out
    }

    /// The `i`th of ``orderedRules``, found without building the list (labels and reasons ask
    /// for one rule at a time).
    public func orderedRule(_ i: Int) -> (action: PolicyAction, index: Int, rule: Rule)? {
        guard i >= 0 else { return nil }
        var n = i
        for (k, r) in allow.enumerated() where r.grant != nil {
            if n == 0 { return (.allow, k, r) }
            n -= 1
        }
        if n < deny.count { return (.deny, n, deny[n]) }
        n -= deny.count
        var k = 0
        for r in allow where r.grant == nil {
            if n == 0 { return (.allow, k, r) }
            n -= 1
            k += 1
        }
        return nil
    }

    /// A short name of a rule reference: "deny[0]: country RU", "default", "grant g-3".
    public func ruleLabel(_ ref: Int) -> String {
        switch ref {
        case RuleRef.loopback: return "loopback"
        case RuleRef.privateNetworks: return "private"
        case RuleRef.unknown: return "unknown"
        case RuleRef.fallback: return "default"
        default:
            guard let (action, index, rule) = orderedRule(ref - RuleRef.firstRule) else { return "rule #\(ref)" }
            if let g = rule.grant { return "grant \(g.id): \(rule.description)" }
            return "\(action.rawValue)[\(index)]: \(rule.description)"
        }
    }

    /// Whether the rule behind a reference narrows to a process (its verdict needs the process).
    public func ruleNeedsProcess(_ ref: Int) -> Bool {
        orderedRule(ref - RuleRef.firstRule)?.rule.narrowsProcess ?? false
    }

    public func evaluate(_ dest: DestinationFacts, process: ProcessFacts) -> PolicyOutcome {
        switch dest.special {
        case .loopback: return .decided(loopback, rule: RuleRef.loopback)
        case .private: return .decided(privateNetworks, rule: RuleRef.privateNetworks)
        case nil: break
        }
        return evaluate(from: 0, orderedRules, dest, process)
    }

    /// Rules from `start` on. A rule that cannot be told (hostname or process unknown) is decided
    /// anyway when both ways lead to the same action: a US address is refused whether or not it is
    /// blocked.example, so the kernel can refuse it.
    private func evaluate(from start: Int, _ rules: [(action: PolicyAction, index: Int, rule: Rule)],
                          _ dest: DestinationFacts, _ process: ProcessFacts) -> PolicyOutcome {
        var i = start
        while i < rules.count {
            let entry = rules[i]
            switch Self.match(entry.rule, dest, process) {
            case .yes: return .decided(entry.action, rule: RuleRef.firstRule + i)
            case .no: i += 1
            case .unknown:
                let otherwise = evaluate(from: i + 1, rules, dest, process)
                if case .decided(let action, _) = otherwise, action == entry.action { return otherwise }
                return .undecided(rule: RuleRef.firstRule + i)
            }
        }
        if dest.region == nil { return .decided(unknown, rule: RuleRef.unknown) }
        return .decided(effectiveDefault, rule: RuleRef.fallback)
    }

    enum Tri { case yes, no, unknown }

    static func match(_ rule: Rule, _ d: DestinationFacts, _ p: ProcessFacts) -> Tri {
        var result = Tri.yes
        switch rule.target {
        case .regions(let r):
            if d.region.map({ r.contains($0) }) != true { return .no }
        case .countries(let c):
            if d.country.map({ c.contains($0) }) != true { return .no }
        case .jurisdictions(let j):
            if !d.jurisdictions.contains(where: { j.contains($0) }) { return .no }
        case .hosts(let globs):
            switch d.host {
            case .unknown: result = .unknown
            case .none: return .no
            case .name(let h): if !globs.contains(where: { $0.matches(h) }) { return .no }
            }
        }
        if let exe = rule.exe {
            // `*` stays within one path component. A path that is not plainly absolute (relative,
            // or with `.`, `..` or `//`) is not known: resolving it by text could disagree with the
            // file system (a symlinked directory before a `..`), so rules on it cannot decide.
            if let actual = p.exe, Self.isPlainAbsolute(actual) {
                if fnmatch(exe, actual, FNM_PATHNAME) != 0 { return .no }
            } else { result = .unknown }
        }
        if let uid = rule.uid {
            if let actual = p.uid {
                if actual != uid { return .no }
            } else { result = .unknown }
        }
        return result
    }

    static func isPlainAbsolute(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        return !path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            .contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }

    /// The reason of a decision in an auditor's words.
    public func reason(_ action: PolicyAction, rule ref: Int, dest: DestinationFacts) -> String {
        let what = dest.description
        switch ref {
        case RuleRef.loopback, RuleRef.privateNetworks:
            return "\(what): policy \(name) \(action == .allow ? "allows" : "refuses") \(ref == RuleRef.loopback ? "loopback" : "private networks")"
        case RuleRef.unknown:
            return "\(what): policy \(name) \(action == .allow ? "allows" : "refuses") destinations of unknown region"
        case RuleRef.fallback:
            return action == .allow ? "\(what) is allowed by policy \(name) (no rule refuses it)"
                                    : "\(what) is not allowed by policy \(name)"
        default:
            let label = ruleLabel(ref)
            if let g = orderedRule(ref - RuleRef.firstRule)?.rule.grant {
                return "\(what) is allowed by grant \(g.id) on policy \(name): \(g.reason)"
            }
            return "\(what) is \(action == .allow ? "allowed" : "refused") by policy \(name) (\(label))"
        }
    }
}
