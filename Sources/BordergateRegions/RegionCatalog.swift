/// Region -> country -> jurisdictions. The built-in catalog comes from the Data folder
/// (embedded at build time); policy files may add regions and groups.
public struct RegionCatalog: Sendable {
    private var regionCountry: [String: String]
    private var groupOrder: [String]
    private var groupMembers: [String: [String]]
    private var countries: Set<String>

    public init(regions: [String: String] = [:], groups: [(String, [String])] = [], countries: Set<String> = []) {
        regionCountry = [:]
        groupOrder = []
        groupMembers = [:]
        self.countries = Set(countries.map { $0.uppercased() })
        for (r, c) in regions { define(region: r, country: c) }
        for (g, m) in groups { define(group: g, countries: m) }
    }

    public static let builtIn: RegionCatalog = {
        var catalog = RegionCatalog()
        for line in dataLines(embeddedCountriesTxt) {
            for code in line.split(separator: " ") { catalog.countries.insert(String(code)) }
        }
        for line in dataLines(embeddedCloudRegionsCsv) {
            let f = line.split(separator: ",").map { String($0).trimmingSpaces }
            precondition(f.count == 2, "Data/cloud-regions.csv: bad line \(line)")
            if f[0] == "region" { continue }
            catalog.define(region: f[0], country: f[1])
        }
        for line in dataLines(embeddedJurisdictionsCsv) {
            let f = line.split(separator: ",", maxSplits: 1).map { String($0).trimmingSpaces }
            precondition(f.count == 2, "Data/jurisdictions.csv: bad line \(line)")
            if f[0] == "group" { continue }
            // Both "EU,AT BE ..." and one "EU,AT" line per member are accepted.
            let members = f[1].split(separator: " ").map(String.init)
            catalog.define(group: f[0], countries: (catalog.groupMembers[f[0]] ?? []) + members)
        }
        return catalog
    }()

    private static func dataLines(_ text: String) -> [String] {
        text.split(separator: "\n").map { String($0).trimmingSpaces }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// "DE" -> "DE", "aws:eu-central-1" -> "DE", unknown -> nil.
    public func country(ofRegion region: String) -> String? {
        if let c = regionCountry[region] ?? regionCountry[region.lowercased()] { return c }
        let upper = region.uppercased()
        return upper.utf8.count == 2 && countries.contains(upper) ? upper : nil
    }

    /// The country first, then every group it belongs to, in the order the groups were defined:
    /// "DE" -> ["DE", "EU", "EEA"], "NO" -> ["NO", "EEA", "EFTA"].
    public func jurisdictions(ofCountry country: String) -> [String] {
        let code = country.uppercased()
        guard !code.isEmpty else { return [] }
        var result = [code]
        for g in groupOrder where groupMembers[g]!.contains(code) { result.append(g) }
        return result
    }

    /// A region of the policy's own; a later definition replaces an earlier one.
    public mutating func define(region: String, country: String) {
        regionCountry[region] = country.uppercased()
    }

    /// A group of the policy's own; redefining a group replaces its members and keeps its place.
    public mutating func define(group: String, countries members: [String]) {
        if groupMembers[group] == nil { groupOrder.append(group) }
        var seen = Set<String>()
        groupMembers[group] = members.map { $0.uppercased() }.filter { seen.insert($0).inserted }
    }

    public var groups: [String: [String]] { groupMembers }

    /// Group names in the order `jurisdictions(ofCountry:)` lists them.
    public var groupNames: [String] { groupOrder }

    /// Every region with a known country (cloud regions and those defined by policy).
    public var regions: [String: String] { regionCountry }

    /// ISO 3166-1 alpha-2 (and XK), case-insensitive.
    public func isKnownCountry(_ code: String) -> Bool { countries.contains(code.uppercased()) }
}
