import BordergateMasking
import BordergateRegions

/// What a policy can do with a connection.
public enum PolicyAction: String, Sendable, Codable {
    case allow, deny
}

/// One named residency policy (`policies:` in the config file).
///
/// Evaluation order, the same in the kernel and the proxy: loopback and private networks by their
/// own settings; then the deny rules in order; then the allow rules in order; then `unknown` for
/// destinations no table knows, else `default` (deny when there are allow rules, allow when not).
/// Grants are allow rules placed before everything else, so an exception beats a deny rule.
public struct Policy: Sendable {
    public enum Mode: String, Sendable { case enforce, audit }
    /// Which allowed TCP connections go through the proxy: `all`, or only those whose verdict
    /// needs a hostname or the process (`needed`), the rest going direct.
    public enum Inspect: String, Sendable { case all, needed }

    public var name: String
    public var mode: Mode = .enforce
    public var inspect: Inspect = .needed
    public var unknown: PolicyAction = .deny
    public var loopback: PolicyAction = .allow
    public var privateNetworks: PolicyAction = .allow
    /// nil: deny when there are allow rules, allow when there are none.
    public var fallback: PolicyAction?
    public var deny: [Rule] = []
    public var allow: [Rule] = []
    /// `mask:`: mask the content of its connections (nil: content is relayed as it is).
    public var mask: MaskPolicy?
    /// `record: true`: keep the content of its sessions (masked) as well as their metadata.
    public var record = false
    /// `sql:`: guardrails on PostgreSQL statements (nil: statements are not decided).
    public var sql: SQLPolicy?
    /// `tls: intercept`: terminate its connections' TLS, so what is inside is masked and recorded.
    public var tls: TLSMode = .passthrough
    /// Where it was defined ("file:line:column"), for messages.
    public var origin: String = ""

    public init(name: String) { self.name = name }

    /// Its connections' content must be seen by the proxy: every TCP connection is relayed.
    public var needsContent: Bool { mask != nil || record || sql != nil || tls == .intercept }

    public var effectiveDefault: PolicyAction { fallback ?? (allow.isEmpty ? .allow : .deny) }
}

/// `recording: {retain: 30d, max-size: 2GiB, max-session-body: 64MiB}`: retention of the
/// session store (sessions that ended longer ago than `retain` go, then the oldest until the
/// store fits in `max-size`) and the cap on body bytes kept per session.
public struct RecordingConfig: Sendable, Equatable {
    public static let defaultRetain: Double = 30 * 86400
    public static let defaultMaxBytes: UInt64 = 2 << 30
    public static let defaultMaxSessionBodyBytes: UInt64 = 64 << 20

    /// Seconds.
    public var retain: Double
    public var maxBytes: UInt64
    public var maxSessionBodyBytes: UInt64

    public init(retain: Double = RecordingConfig.defaultRetain, maxBytes: UInt64 = RecordingConfig.defaultMaxBytes,
                maxSessionBodyBytes: UInt64 = RecordingConfig.defaultMaxSessionBodyBytes) {
        self.retain = retain
        self.maxBytes = maxBytes
        self.maxSessionBodyBytes = maxSessionBodyBytes
    }
}

/// `proxy: {max-connections-per-cgroup: 4096, max-connections-per-uid: 4096}`: how many proxied
/// connections one cgroup and one user may hold at once (0: no limit). Each costs the daemon two
/// file descriptors; the kernel refuses a redirect past either limit at connect.
public struct ProxyConfig: Sendable, Equatable {
    public static let defaultMaxPerCgroup: UInt32 = 4096
    public static let defaultMaxPerUID: UInt32 = 4096

    public static let defaultDrain: Double = 10

    public var maxConnectionsPerCgroup: UInt32
    public var maxConnectionsPerUID: UInt32
    /// `drain: 10s`: how long a stopping daemon lets relayed connections finish (new guarded
    /// connects are refused from the start of the stop) before it closes what is left. 0: none.
    public var drainSeconds: Double

    public init(maxConnectionsPerCgroup: UInt32 = ProxyConfig.defaultMaxPerCgroup,
                maxConnectionsPerUID: UInt32 = ProxyConfig.defaultMaxPerUID, drainSeconds: Double = ProxyConfig.defaultDrain) {
        self.maxConnectionsPerCgroup = maxConnectionsPerCgroup
        self.maxConnectionsPerUID = maxConnectionsPerUID
        self.drainSeconds = drainSeconds
    }
}

/// One allow or deny entry.
public struct Rule: Sendable {
    public enum Target: Sendable {
        case regions([String])
        case countries([String])
        case jurisdictions([String])
        case hosts([HostnameGlob])
    }

    public var target: Target
    /// Narrows the rule to processes whose executable matches this glob (fnmatch).
    public var exe: String?
    public var uid: UInt32?
    /// Set for grants: why and until when (wall-clock seconds).
    public var grant: Grant?
    /// Where it was written ("file:line:column").
    public var origin: String = ""

    public init(target: Target, exe: String? = nil, uid: UInt32? = nil, grant: Grant? = nil) {
        self.target = target
        self.exe = exe
        self.uid = uid
        self.grant = grant
    }

    public var narrowsProcess: Bool { exe != nil || uid != nil }

    public var targetDescription: String {
        switch target {
        case .regions(let r): return (r.count == 1 ? "region " : "regions ") + r.joined(separator: ", ")
        case .countries(let c): return (c.count == 1 ? "country " : "countries ") + c.joined(separator: ", ")
        case .jurisdictions(let j): return (j.count == 1 ? "jurisdiction " : "jurisdictions ") + j.joined(separator: ", ")
        case .hosts(let h): return (h.count == 1 ? "host " : "hosts ") + h.map(\.pattern).joined(separator: ", ")
        }
    }

    public var description: String {
        var s = targetDescription
        if let exe { s += " for exe \(exe)" }
        if let uid { s += (exe == nil ? " for" : " and") + " uid \(uid)" }
        return s
    }
}

/// A just-in-time exception: `bordergate grant`.
public struct Grant: Sendable, Codable, Equatable {
    public var id: String
    public var allow: String
    public var reason: String
    public var expires: Double
    public var grantedBy: String?
    /// When it ends on CLOCK_BOOTTIME (ns), fixed when it is given: setting the wall clock back
    /// must not lengthen it.
    public var endsBootNanos: UInt64

    public init(id: String, allow: String, reason: String, expires: Double, grantedBy: String?, endsBootNanos: UInt64) {
        self.id = id
        self.allow = allow
        self.reason = reason
        self.expires = expires
        self.grantedBy = grantedBy
        self.endsBootNanos = endsBootNanos
    }
}

/// The whole configuration file.
public struct BordergateConfig: Sendable {
    public struct TableSource: Sendable, Equatable {
        public var path: String
        public var format: RegionTableFormat?
        public var name: String?
        public var origin: String

        public init(path: String, format: RegionTableFormat? = nil, name: String? = nil, origin: String = "") {
            self.path = path
            self.format = format
            self.name = name
            self.origin = origin
        }
    }

    /// The file it came from, or "(built-in)".
    public var path: String
    /// nil: the default compiled tables in the state directory, if present.
    public var tables: [TableSource]?
    public var regions: [String: String] = [:]
    public var groups: [String: [String]] = [:]
    public var policies: [String: Policy] = [:]
    public var policyOrder: [String] = []
    public var defaultPolicy: String
    /// `maskers:`: custom detectors by name (a regular expression each), for `mask.detectors`.
    public var maskers: [String: CustomDetector] = [:]
    /// Cgroups the daemon guards when it starts, with their policy.
    public var cgroups: [(cgroup: String, policy: String)] = []
    /// How long session recordings are kept and how much disk they may take (`recording:`).
    public var recording = RecordingConfig()
    /// What TLS interception trusts and leaves alone (`tls:`).
    public var tls = TLSSettings()
    /// Where every event is shipped for the fleet view (`export:`); nil: nowhere.
    public var export: ExportConfig?
    /// Limits on proxied connections (`proxy:`).
    public var proxy = ProxyConfig()
    /// Audit log rotation and retention (`audit:`).
    public var audit = AuditLogConfig()
    /// Where `/metrics` is served (`metrics:`); nil: not served.
    public var metrics: MetricsConfig?

    public init(path: String, defaultPolicy: String) {
        self.path = path
        self.defaultPolicy = defaultPolicy
    }

    public static let builtInPath = "(built-in)"

    /// Without a config file: one policy, `default`, that allows everything and relays every TCP
    /// connection through the proxy, so it is recorded.
    public static var builtIn: BordergateConfig {
        var c = BordergateConfig(path: builtInPath, defaultPolicy: "default")
        var p = Policy(name: "default")
        p.inspect = .all
        p.unknown = .allow
        p.fallback = .allow
        p.origin = builtInPath
        c.policies["default"] = p
        c.policyOrder = ["default"]
        return c
    }

    /// The catalog with this file's own regions and groups added.
    public func catalog(base: RegionCatalog = .builtIn) -> RegionCatalog {
        var cat = base
        for (r, c) in regions.sorted(by: { $0.key < $1.key }) { cat.define(region: r, country: c) }
        for (g, cs) in groups.sorted(by: { $0.key < $1.key }) { cat.define(group: g, countries: cs) }
        return cat
    }
}
