import BordergateRegions

/// One kernel verdict row, as the BPF programs read it (see bpf/include/bordergate_abi.h).
public struct CompiledRow: Sendable, Hashable {
    public enum Verdict: String, Sendable { case redirect, pass, deny }
    public var tcp: Verdict
    public var udp: Verdict
    public var tcpAudited = false
    public var udpAudited = false
    public var quiet = false
    public var rule: Int

    public init(tcp: Verdict, udp: Verdict, tcpAudited: Bool = false, udpAudited: Bool = false, quiet: Bool = false, rule: Int) {
        self.tcp = tcp
        self.udp = udp
        self.tcpAudited = tcpAudited
        self.udpAudited = udpAudited
        self.quiet = quiet
        self.rule = rule
    }
}

/// The special table: loopback and private networks, known to every policy whatever tables are
/// loaded. It is listed first, so these prefixes win over any table with the same prefix.
public enum SpecialRanges {
    public static let tableName = "special"

    public static var table: RegionTable {
        let loopback = ["127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128"]
        let priv = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
                    "fc00::/7", "fe80::/10"]
        var entries: [RegionTable.Entry] = []
        for p in loopback { entries.append(.init(prefix: IPPrefix(p)!, region: "loopback")) }
        for p in priv { entries.append(.init(prefix: IPPrefix(p)!, region: "private")) }
        return RegionTable(name: tableName, source: "built in (RFC 1122, 1918, 3927, 4193, 4291, 6598)", entries: entries)
    }

    public static func special(ofRegion region: String?) -> DestinationFacts.Special? {
        switch region {
        case "loopback": return .loopback
        case "private": return .private
        default: return nil
        }
    }
}

extension DestinationFacts {
    /// Facts about an address from a region lookup.
    public init(address: String, answer: RegionAnswer?, host: Host = .unknown) {
        let region = answer?.region
        self.init(address: address, special: SpecialRanges.special(ofRegion: region), region: region,
                  country: answer?.country, jurisdictions: answer?.jurisdictions ?? [], host: host)
    }

    /// Facts about a region class of the kernel image (class 0: no table knows the address).
    public init(regionClass: Int, classes: [String], catalog: RegionCatalog) {
        let region = regionClass > 0 && regionClass < classes.count ? classes[regionClass] : nil
        let country = region.flatMap { catalog.country(ofRegion: $0) }
        self.init(address: region ?? "an address", special: SpecialRanges.special(ofRegion: region), region: region,
                  country: country, jurisdictions: country.map { catalog.jurisdictions(ofCountry: $0) } ?? [])
    }
}

extension Policy {
    /// The kernel's rows for every region class: what is decidable from the address alone is
    /// decided; the rest goes to the proxy (TCP) or is refused (UDP, which the proxy cannot relay:
    /// fail closed). Hostname rules never match UDP: it carries no hostname.
    public func compile(classes: [String], catalog: RegionCatalog) -> [CompiledRow] {
        (0..<max(classes.count, 1)).map { c in
            compileRow(DestinationFacts(regionClass: c, classes: classes, catalog: catalog))
        }
    }

    /// What the kernel does for a class it has no row for (never happens with a whole compile).
    public var failClosedRow: CompiledRow { CompiledRow(tcp: .deny, udp: .deny, rule: RuleRef.unknown) }

    func compileRow(_ facts: DestinationFacts) -> CompiledRow {
        let audit = mode == .audit
        var tcpFacts = facts
        tcpFacts.host = .unknown
        var row = CompiledRow(tcp: .deny, udp: .deny, rule: RuleRef.fallback)
        switch evaluate(tcpFacts, process: .unknown) {
        case .decided(.deny, let rule):
            row.rule = rule
            row.tcp = audit ? .pass : .deny
            row.tcpAudited = audit
        case .decided(.allow, let rule):
            row.rule = rule
            row.tcp = facts.special == .loopback ? .pass : (inspect == .all || needsContent ? .redirect : .pass)
            row.quiet = facts.special == .loopback
        case .undecided(let rule):
            row.rule = rule
            row.tcp = .redirect
        }
        var udpFacts = facts
        udpFacts.host = .none
        switch evaluate(udpFacts, process: .unknown) {
        case .decided(.allow, _):
            row.udp = .pass
        case .decided(.deny, _), .undecided:
            row.udp = audit ? .pass : .deny
            row.udpAudited = audit
        }
        return row
    }
}
