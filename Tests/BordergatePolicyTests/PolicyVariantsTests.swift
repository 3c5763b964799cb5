import BordergatePolicy
import BordergateRegions
import Testing

@Suite struct GrantTargetTests {
    @Test func plainWordsAreJurisdictionsCountriesRegionsOrHosts() throws {
        #expect(try Grant.target("EU").descriptionForTest == "jurisdiction EU")
        #expect(try Grant.target("us").descriptionForTest == "country US")
        #expect(try Grant.target("aws:eu-central-1").descriptionForTest == "region aws:eu-central-1")
        #expect(try Grant.target("api.example.com").descriptionForTest == "host api.example.com")
    }

    @Test func spelledOutKindsAreCheckedAgainstTheCatalog() throws {
        #expect(try Grant.target("region=onprem-1").descriptionForTest == "region onprem-1")
        #expect(try Grant.target("country=de").descriptionForTest == "country DE")
        #expect(throws: GrantTargetError.notACountry("XX")) { try Grant.target("country=XX") }
        #expect(throws: GrantTargetError.unrecognised("nothing")) { try Grant.target("nothing") }
        do {
            _ = try Grant.target("jurisdiction=MARS")
            Issue.record("MARS is no jurisdiction")
        } catch {
            guard case .unknownJurisdiction("MARS", let known) = error else { Issue.record("\(error)"); return }
            #expect(known.contains("EU"))
        }
        // a group the config defines is known through its catalog
        var catalog = RegionCatalog.builtIn
        catalog.define(group: "DACH", countries: ["DE", "AT", "CH"])
        #expect(try Grant.target("DACH", catalog: catalog).descriptionForTest == "jurisdiction DACH")
    }
}

@Suite struct PolicyVariantTests {
    let config = try! ConfigParser.parse("""
        policies:
          eu:
            allow:
              - jurisdiction: EU
          open: {}
        """, path: "cfg.yaml")

    func grant(_ id: String, _ allow: String) -> Grant {
        Grant(id: id, allow: allow, reason: "test", expires: 0, grantedBy: nil, endsBootNanos: 1)
    }

    @Test func theParkedPolicyComesFirstThenTheConfigsThenOnePerGrantedCgroup() throws {
        let g = grant("g1", "US")
        let variants = try PolicyVariant.all(config: config, assignments: [("eu", []), ("eu", [g]), ("open", []), ("eu", [g])],
                                             catalog: config.catalog())
        #expect(variants.map(\.policy.name) == [PolicyVariant.parkedName, "eu", "open", "eu"])
        #expect(variants.map(\.key) == [PolicyVariant.key(policy: PolicyVariant.parkedName, grants: []),
                                        PolicyVariant.key(policy: "eu", grants: []),
                                        PolicyVariant.key(policy: "open", grants: []),
                                        PolicyVariant.key(policy: "eu", grants: [g])],
                "two cgroups with the same grants share one variant")
        let granted = variants[3].policy
        #expect(granted.allow.count == 2)
        #expect(granted.allow.first?.grant == g, "a grant goes before every other rule")
        #expect(granted.allow.first?.origin == "grant g1")
    }

    @Test func aGrantOfAPolicyNobodyDefinesAddsNoVariantAndABadTargetIsRefused() throws {
        let none = try PolicyVariant.all(config: config, assignments: [("gone", [grant("g1", "US")])], catalog: config.catalog())
        #expect(none.count == 3)
        #expect(throws: GrantTargetError.unrecognised("nowhere")) {
            try PolicyVariant.all(config: config, assignments: [("eu", [grant("g2", "nowhere")])], catalog: config.catalog())
        }
    }

    @Test func theParkedPolicyRefusesEverythingLoopbackIncluded() {
        let p = PolicyVariant.parkedPolicy
        #expect(p.loopback == .deny && p.privateNetworks == .deny && p.unknown == .deny && p.effectiveDefault == .deny)
    }
}

@Suite struct ClassPartitionTests {
    func row(_ tcp: CompiledRow.Verdict, _ udp: CompiledRow.Verdict, rule: Int = 0) -> CompiledRow {
        CompiledRow(tcp: tcp, udp: udp, rule: rule)
    }

    @Test func classesWithTheSameVerdictsUnderEveryVariantBecomeOne() {
        // class 0 (unknown), 1 and 3 alike under both variants; 2 differs under the second
        let compiled = [
            [row(.deny, .deny), row(.deny, .deny, rule: 4), row(.pass, .pass), row(.deny, .deny)],
            [row(.deny, .deny), row(.deny, .deny), row(.redirect, .deny), row(.deny, .deny, rule: 9)],
        ]
        let p = ClassPartition(compiled: compiled, classCount: 4)
        #expect(p.kernelClassOf == [0, 0, 1, 0], "a rule alone does not split a class")
        #expect(p.representatives == [0, 2])
        #expect(p.rows == [[row(.deny, .deny), row(.pass, .pass)], [row(.deny, .deny), row(.redirect, .deny)]])
        #expect(p.kernelClassCount == 2)
    }

    @Test func compilingPoliciesOverATableSplitsOnlyWhatTheyTellApart() throws {
        let config = try ConfigParser.parse("""
            policies:
              eu:
                allow:
                  - jurisdiction: EU
            """, path: "cfg.yaml")
        let table = RegionTable(name: "t", source: "test", entries: [
            .init(prefix: IPPrefix("198.51.100.0/25")!, region: "DE"),
            .init(prefix: IPPrefix("198.51.100.128/25")!, region: "FR"),
            .init(prefix: IPPrefix("203.0.113.0/24")!, region: "US"),
        ])
        let db = RegionDatabase(tables: [SpecialRanges.table, table], catalog: config.catalog())
        let variants = try PolicyVariant.all(config: config, assignments: [], catalog: db.catalog)
        let p = ClassPartition(variants: variants, classes: db.regionClasses, catalog: db.catalog)
        let classOf = Dictionary(uniqueKeysWithValues: db.regionClasses.enumerated().map { ($0.element, p.kernelClassOf[$0.offset]) })
        #expect(classOf["DE"] == classOf["FR"], "both in the EU: one kernel class")
        #expect(classOf["US"] != classOf["DE"])
        #expect(classOf["loopback"] != classOf["US"], "eu allows loopback, the parked policy does not")
        let eu = try #require(variants.firstIndex { $0.policy.name == "eu" })
        #expect(p.rows[eu][Int(classOf["US"]!)].tcp == .deny)
        #expect(p.rows[eu][Int(classOf["DE"]!)].tcp != .deny)
    }
}

extension Rule.Target {
    var descriptionForTest: String { Rule(target: self).targetDescription }
}
