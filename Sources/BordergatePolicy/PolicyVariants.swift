import BordergateRegions

/// One policy as the kernel holds it in one slot: a policy of the config, the parked policy, or a
/// policy with the grants of one cgroup in front of its rules.
public struct PolicyVariant: Sendable {
    /// Which variant it is: the policy's name and its grants' ids (``PolicyVariant/key(policy:grants:)``).
    public let key: String
    public let policy: Policy

    public init(key: String, policy: Policy) {
        self.key = key
        self.policy = policy
    }

    public static func key(policy: String, grants: [Grant]) -> String {
        ([policy] + grants.map(\.id)).joined(separator: "\u{1}")
    }

    /// The policy for guarded cgroups whose policy is not known (lost state): it refuses
    /// everything, loopback included (a local forward proxy would lead anywhere).
    public static let parkedName = "(parked)"
    public static var parkedPolicy: Policy {
        var p = Policy(name: parkedName)
        p.unknown = .deny
        p.fallback = .deny
        p.privateNetworks = .deny
        p.loopback = .deny
        return p
    }

    /// Every variant a configuration needs in the kernel, in slot order: the parked policy first,
    /// then each policy of the config, then one per cgroup with grants (`assignments`: the policy
    /// and grants of each guarded cgroup; those without grants add nothing).
    public static func all(config: BordergateConfig, assignments: [(policy: String, grants: [Grant])],
                           catalog: RegionCatalog) throws(GrantTargetError) -> [PolicyVariant] {
        var variants = [PolicyVariant(key: key(policy: parkedName, grants: []), policy: parkedPolicy)]
        var seen: Set = [variants[0].key]
        for name in config.policyOrder {
            let k = key(policy: name, grants: [])
            if seen.insert(k).inserted, let p = config.policies[name] { variants.append(.init(key: k, policy: p)) }
        }
        for a in assignments where !a.grants.isEmpty {
            let k = key(policy: a.policy, grants: a.grants)
            if seen.insert(k).inserted, let base = config.policies[a.policy] {
                variants.append(.init(key: k, policy: try base.granting(a.grants, catalog: catalog)))
            }
        }
        return variants
    }
}

extension Policy {
    /// The policy with `grants` as allow rules before all others (a grant beats a deny rule).
    public func granting(_ grants: [Grant], catalog: RegionCatalog) throws(GrantTargetError) -> Policy {
        var p = self
        for g in grants {
            var r = Rule(target: try Grant.target(g.allow, catalog: catalog), grant: g)
            r.origin = "grant \(g.id)"
            p.allow.insert(r, at: 0)
        }
        return p
    }
}

/// Why a grant's `allow` names nothing a policy can match.
public enum GrantTargetError: Error, Sendable, Equatable, CustomStringConvertible {
    case notACountry(String)
    case unknownJurisdiction(String, known: [String])
    case notAHostnamePattern(String)
    case unrecognised(String)

    public var description: String {
        switch self {
        case .notACountry(let v): "'\(v)' is not a country code (ISO 3166 alpha-2, such as US)"
        case .unknownJurisdiction(let v, let known): "'\(v)' is not a known jurisdiction; known: \(known.joined(separator: ", "))"
        case .notAHostnamePattern(let v): "'\(v)' is not a hostname pattern"
        case .unrecognised(let v): "'\(v)' is not a known country, jurisdiction, cloud region (provider:region) or hostname; write region=NAME for a region of your own tables"
        }
    }
}

extension Grant {
    /// What a grant allows: a jurisdiction, a country, a cloud region or a hostname, or the same
    /// spelled out as `region=`, `country=`, `jurisdiction=`, `host=`.
    public static func target(_ text: String, catalog: RegionCatalog = .builtIn) throws(GrantTargetError) -> Rule.Target {
        if let kind = text.firstIndex(of: "="), ["region", "country", "jurisdiction", "host"].contains(String(text[..<kind])) {
            let value = String(text[text.index(after: kind)...])
            switch text[..<kind] {
            case "region": return .regions([value])
            case "country":
                guard catalog.isKnownCountry(value) else { throw .notACountry(value) }
                return .countries([value.uppercased()])
            case "jurisdiction":
                guard catalog.groups[value] != nil else { throw .unknownJurisdiction(value, known: catalog.groups.keys.sorted()) }
                return .jurisdictions([value])
            default:
                guard let g = HostnameGlob(value) else { throw .notAHostnamePattern(value) }
                return .hosts([g])
            }
        }
        if catalog.groups[text] != nil { return .jurisdictions([text]) }
        if text.count == 2, catalog.isKnownCountry(text.uppercased()) { return .countries([text.uppercased()]) }
        if text.contains(":") { return .regions([text]) }
        if text.contains("."), let g = HostnameGlob(text) { return .hosts([g]) }
        throw .unrecognised(text)
    }
}

/// The region classes of a configuration as the kernel tells them apart: classes that get the
/// same verdicts under every variant become one kernel class. Kernel class 0 is region class 0
/// ("no table knows it"), which the tries leave out.
public struct ClassPartition: Sendable, Equatable {
    /// The kernel class of each region class.
    public let kernelClassOf: [UInt32]
    /// One region class standing for each kernel class, in kernel class order.
    public let representatives: [Int]
    /// `rows[v][k]`: the verdict of variant `v` for kernel class `k`.
    public let rows: [[CompiledRow]]

    /// Partitions by the verdicts of `compiled[v][c]` (variant v, region class c). A row's rule
    /// does not split classes: the kernel does not act on it (events name rules from user space).
    public init(compiled: [[CompiledRow]], classCount: Int) {
        func signature(_ c: Int) -> [CompiledRow] {
            compiled.map { rows in
                var r = rows[c]
                r.rule = 0
                return r
            }
        }
        var classOf = [UInt32](repeating: 0, count: classCount)
        var representatives = [0]
        var bySignature: [[CompiledRow]: UInt32] = [signature(0): 0]
        for c in 1..<max(classCount, 1) {
            let sig = signature(c)
            if let k = bySignature[sig] {
                classOf[c] = k
            } else {
                let k = UInt32(representatives.count)
                bySignature[sig] = k
                representatives.append(c)
                classOf[c] = k
            }
        }
        kernelClassOf = classOf
        self.representatives = representatives
        rows = compiled.map { variantRows in representatives.map { variantRows[$0] } }
    }

    /// Compiles every variant over the database's region classes and partitions the result.
    public init(variants: [PolicyVariant], classes: [String], catalog: RegionCatalog) {
        self.init(compiled: variants.map { $0.policy.compile(classes: classes, catalog: catalog) }, classCount: classes.count)
    }

    public var kernelClassCount: Int { representatives.count }
}
