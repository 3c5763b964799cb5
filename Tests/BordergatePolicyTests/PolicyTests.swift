import BordergatePolicy
import BordergateRegions
import Testing

let sampleConfig = """
    tables:
      - path: /etc/bordergate/test.csv
        format: cidr-csv
        name: test
    regions:
      onprem-fra: DE
    groups:
      DACH: [DE, AT, CH]
    default-policy: eu-only
    policies:
      eu-only:
        mode: enforce
        unknown: deny
        allow:
          - jurisdiction: EU
          - host: "*.github.com"
        deny:
          - country: RU
          - host: blocked.example
      audit-eu:
        mode: audit
        allow:
          - jurisdictions: [EU, EEA]
      curl-only:
        allow:
          - country: US
            exe: /usr/bin/curl
          - region: onprem-fra
            uid: 1000
      open:
        inspect: all
    cgroups:
      /ci/runner: eu-only
    """

func parse(_ text: String) throws -> BordergateConfig {
    try ConfigParser.parse(text, path: "cfg.yaml")
}

func parseError(_ text: String) -> String {
    do {
        _ = try parse(text)
        return "no error"
    } catch {
        return "\(error)"
    }
}

@Suite struct ConfigParsing {
    @Test func readsEverySection() throws {
        let c = try parse(sampleConfig)
        #expect(c.defaultPolicy == "eu-only")
        #expect(c.policyOrder == ["eu-only", "audit-eu", "curl-only", "open"])
        #expect(c.tables == [.init(path: "/etc/bordergate/test.csv", format: .cidrCSV, name: "test", origin: "cfg.yaml:2:5")])
        #expect(c.regions == ["onprem-fra": "DE"])
        #expect(c.groups["DACH"] == ["DE", "AT", "CH"])
        #expect(c.cgroups.map(\.cgroup) == ["/ci/runner"])
        let eu = try #require(c.policies["eu-only"])
        #expect(eu.allow.count == 2 && eu.deny.count == 2)
        #expect(eu.deny[1].description == "host blocked.example")
        #expect(c.policies["audit-eu"]?.mode == .audit)
        #expect(c.policies["open"]?.inspect == .all)
        #expect(c.policies["open"]?.effectiveDefault == .allow)
        #expect(eu.effectiveDefault == .deny)
        let curl = try #require(c.policies["curl-only"])
        #expect(curl.allow[0].exe == "/usr/bin/curl")
        #expect(curl.allow[1].uid == 1000)
    }

    @Test func relativeTablePathsAreRelativeToTheFile() throws {
        let c = try ConfigParser.parse("tables: [regions.csv]\npolicies:\n  p: {}\n", path: "/etc/bg/config.yaml")
        #expect(c.tables?.first?.path == "/etc/bg/regions.csv")
        #expect(c.defaultPolicy == "p")
    }

    @Test func sqlGuardrailsParseByIssue15sNames() throws {
        let c = try ConfigParser.parse("""
            policies:
              db:
                sql:
                  deny: [drop, truncate, delete-without-where, {table: "payroll.*"}]
                  review: [alter, update-without-where]
                  review-timeout: 5m
                  on-error: pass
            """, path: "cfg.yaml")
        let sql = try #require(c.policies["db"]?.sql)
        #expect(sql.deny == [.kind(.drop), .kind(.truncate), .kind(.deleteWithoutWhere), .table("payroll.*")])
        #expect(sql.review == [.kind(.alter), .kind(.updateWithoutWhere)])
        #expect(sql.reviewTimeout == 300)
        #expect(sql.onError == .pass)
        #expect(c.policies["db"]?.needsContent == true, "guardrails need the connection relayed through the proxy")
    }

    @Test(arguments: [
        ("policies:\n  p:\n    mode: strict\n", "cfg.yaml:3:11: mode is 'strict'; expected one of enforce, audit"),
        ("policies:\n  p:\n    alow: []\n", "cfg.yaml:3:5: unknown key 'alow' in policy p; expected mode, inspect, unknown, loopback, private, default, allow, deny, mask, record, sql or tls"),
        ("policy:\n  p: {}\n", "cfg.yaml:1:1: unknown key 'policy'; expected tables, regions, groups, default-policy, policies, cgroups, maskers, recording, tls, export, proxy, audit or metrics"),
        ("policies:\n  p:\n    sql:\n      deny: [drop, dorp]\n", "cfg.yaml:4:20: sql.deny of policy p names 'dorp'; expected one of drop, truncate, alter, grant, delete-without-where, update-without-where, copy-to-program, or {table: \"schema.table\"}"),
        ("policies:\n  p:\n    sql:\n      deny: [{table: 'a b'}]\n", "cfg.yaml:4:22: table 'a b' is not a table pattern"),
        ("policies:\n  p:\n    sql: {review-timeout: soon}\n", "cfg.yaml:3:27: review-timeout is 'soon'; expected a duration"),
        ("policies:\n  p:\n    sql: {allow: [drop]}\n", "cfg.yaml:3:11: unknown key 'allow' in sql of policy p; expected deny, review, review-timeout or on-error"),
        ("policies:\n  p:\n    mask:\n      strategy: scramble\n", "cfg.yaml:4:17: strategy is 'scramble'; expected one of redact, partial, hash"),
        ("policies:\n  p:\n    mask: {detectors: [email, emial]}\n", "cfg.yaml:3:23: policy p masks with 'emial', which is neither a built-in detector (email, credit-card, iban, us-ssn, phone, ip-address, aws-access-key, jwt, private-key, secret-token) nor defined under 'maskers:'"),
        ("maskers:\n  emp: 'EMP-[0-9'\npolicies:\n  p: {}\n", "cfg.yaml:2:8: masker emp: 'EMP-[0-9' is not a regular expression"),
        ("policies:\n  p:\n    record: maybe\n", "cfg.yaml:3:13: record is 'maybe'; expected true or false"),
        ("policies:\n  p:\n    mask: {on-error: ignore}\n", "cfg.yaml:3:22: on-error is 'ignore'; expected one of block, pass"),
        ("default-policy: nope\npolicies:\n  p: {}\n", "cfg.yaml:1:17: default-policy names 'nope', which is not defined; expected one of p"),
        ("policies:\n  p:\n    allow:\n      - country: XX\n", "cfg.yaml:4:9: 'XX' is not a country code; expected ISO 3166 alpha-2, such as DE or US"),
        ("policies:\n  p:\n    deny:\n      - host: 'bad host'\n", "cfg.yaml:4:15: 'bad host' is not a hostname pattern; expected names like api.example.com or *.example.com (letters, digits, '-', '.', '*')"),
        ("policies:\n  p:\n    deny:\n      - country: US\n        host: x.example\n", "cfg.yaml:5:9: a rule in deny of policy p names two kinds of destination; expected one of region, country, jurisdiction or host per rule"),
        ("policies:\n  p:\n    deny:\n      - exe: /bin/sh\n", "cfg.yaml:4:9: a rule in deny of policy p names no destination; expected one of region, country, jurisdiction or host"),
        ("policies:\n  p:\n    allow:\n      - jurisdiction: MARS\n", "cfg.yaml:4:9: 'MARS' is not a known jurisdiction; expected one of"),
        ("policies:\n  p:\n    allow: country\n", "cfg.yaml:3:12: allow must be a list of rules such as '- country: DE' or '- host: \"*.example.com\"'"),
        ("cgroups:\n  /ci: ghost\npolicies:\n  p: {}\n", "cfg.yaml:2:8: cgroup /ci names policy 'ghost', which is not defined; expected one of p"),
        ("policies: {}\n", "cfg.yaml:1:1: no policies defined; expected 'policies:' with at least one named policy"),
        ("policies:\n  (parked): {}\n", "cfg.yaml:2:3: policy name '(parked)' must start with a letter or digit"),
        ("", "cfg.yaml:1:1: the file is empty; expected a mapping with 'policies:'"),
        ("policies:\n  p:\n    mode: [enforce\n", "cfg.yaml:4:1: YAML syntax:"),
        ("policies:\n  p: {}\n  p: {}\n", "cfg.yaml:2:3: duplicate key 'p' in this mapping; expected each key once"),
    ])
    func errorsNameFileLineAndColumn(input: String, expected: String) {
        let message = parseError(input)
        #expect(message.hasPrefix(expected), "got: \(message)")
        #expect(!message.contains("\n"))
    }
}

/// Classes as the kernel image would have them: 0 unknown, then the special ones, then regions.
let classes = ["", "loopback", "private", "DE", "US", "RU", "aws:us-east-1", "aws:eu-central-1", "onprem-fra"]

func catalog() throws -> RegionCatalog { try parse(sampleConfig).catalog() }

func facts(_ region: String?, host: DestinationFacts.Host = .unknown) throws -> DestinationFacts {
    let cat = try catalog()
    let country = region.flatMap { cat.country(ofRegion: $0) }
    return DestinationFacts(address: "198.51.100.7", special: SpecialRanges.special(ofRegion: region), region: region,
                            country: country, jurisdictions: country.map { cat.jurisdictions(ofCountry: $0) } ?? [], host: host)
}

@Suite struct Evaluation {
    @Test func denyRulesComeBeforeAllowRulesAndTheDefaultCloses() throws {
        let p = try #require(try parse(sampleConfig).policies["eu-only"])
        let known = ProcessFacts(exe: "/usr/bin/curl", uid: 0)
        #expect(p.evaluate(try facts("DE", host: .none), process: known) == .decided(.allow, rule: RuleRef.firstRule + 2))
        #expect(p.evaluate(try facts("aws:eu-central-1", host: .none), process: known) == .decided(.allow, rule: RuleRef.firstRule + 2))
        #expect(p.evaluate(try facts("RU", host: .none), process: known) == .decided(.deny, rule: RuleRef.firstRule))
        #expect(p.evaluate(try facts("US", host: .none), process: known) == .decided(.deny, rule: RuleRef.fallback))
        #expect(p.evaluate(try facts(nil, host: .none), process: known) == .decided(.deny, rule: RuleRef.unknown))
        #expect(p.evaluate(try facts("loopback"), process: .unknown) == .decided(.allow, rule: RuleRef.loopback))
        // hostname rules: undecidable without the hostname, decided with it
        #expect(p.evaluate(try facts("DE"), process: .unknown) == .undecided(rule: RuleRef.firstRule + 1))
        #expect(p.evaluate(try facts("DE", host: .name("blocked.example")), process: known) == .decided(.deny, rule: RuleRef.firstRule + 1))
        #expect(p.evaluate(try facts("US", host: .name("api.github.com")), process: known) == .decided(.allow, rule: RuleRef.firstRule + 3))
        #expect(p.ruleLabel(RuleRef.firstRule + 1) == "deny[1]: host blocked.example")
        #expect(p.ruleLabel(RuleRef.firstRule + 2) == "allow[0]: jurisdiction EU")
    }

    @Test func processRulesNeedTheProcess() throws {
        let p = try #require(try parse(sampleConfig).policies["curl-only"])
        #expect(p.evaluate(try facts("US", host: .none), process: .unknown) == .undecided(rule: RuleRef.firstRule))
        #expect(p.evaluate(try facts("US", host: .none), process: .init(exe: "/usr/bin/curl", uid: 0)) == .decided(.allow, rule: RuleRef.firstRule))
        #expect(p.evaluate(try facts("US", host: .none), process: .init(exe: "/usr/bin/wget", uid: 0)) == .decided(.deny, rule: RuleRef.fallback))
        #expect(p.evaluate(try facts("onprem-fra", host: .none), process: .init(exe: "/bin/x", uid: 1000)) == .decided(.allow, rule: RuleRef.firstRule + 1))
        #expect(p.evaluate(try facts("onprem-fra", host: .none), process: .init(exe: "/bin/x", uid: 1001)) == .decided(.deny, rule: RuleRef.fallback))
    }

    @Test func reasonsReadAsSentences() throws {
        let p = try #require(try parse(sampleConfig).policies["eu-only"])
        #expect(p.reason(.deny, rule: RuleRef.fallback, dest: try facts("aws:us-east-1")) == "region aws:us-east-1 (US) is not allowed by policy eu-only")
        #expect(p.reason(.deny, rule: RuleRef.firstRule, dest: try facts("RU")) == "country RU is refused by policy eu-only (deny[0]: country RU)")
        #expect(p.reason(.allow, rule: RuleRef.firstRule + 2, dest: try facts("DE", host: .name("x.example"))) == "host x.example in country DE is allowed by policy eu-only (allow[0]: jurisdiction EU)")
    }
}

@Suite struct KernelCompilation {
    func rows(_ name: String) throws -> [String: CompiledRow] {
        let c = try parse(sampleConfig)
        let p = try #require(c.policies[name])
        let compiled = p.compile(classes: classes, catalog: c.catalog())
        #expect(compiled.count == classes.count)
        return Dictionary(uniqueKeysWithValues: zip(classes.map { $0.isEmpty ? "(unknown)" : $0 }, compiled))
    }

    @Test func whatTheAddressDecidesIsDecidedInTheKernel() throws {
        let r = try rows("eu-only")
        // hostname deny rules leave EU destinations to the proxy; UDP carries no hostname
        #expect(r["DE"]?.tcp == .redirect)
        #expect(r["DE"]?.udp == .pass)
        // a US address might still be a *.github.com host: proxy for TCP, refused for UDP
        #expect(r["US"]?.tcp == .redirect)
        #expect(r["US"]?.udp == .deny)
        #expect(r["RU"]?.tcp == .deny && r["RU"]?.udp == .deny)
        #expect(r["(unknown)"]?.tcp == .redirect) // *.github.com could be anywhere
        #expect(r["loopback"] == CompiledRow(tcp: .pass, udp: .pass, quiet: true, rule: RuleRef.loopback))
        #expect(r["private"]?.tcp == .pass)
    }

    @Test func withoutHostnameRulesTheKernelDecidesAlone() throws {
        let r = try rows("audit-eu")
        #expect(r["DE"]?.tcp == .pass && r["DE"]?.tcpAudited == false)
        #expect(r["US"] == CompiledRow(tcp: .pass, udp: .pass, tcpAudited: true, udpAudited: true, rule: RuleRef.fallback))
        #expect(r["(unknown)"]?.tcpAudited == true)
    }

    @Test func processRulesGoToTheProxyAndUDPFailsClosed() throws {
        let r = try rows("curl-only")
        #expect(r["US"]?.tcp == .redirect)
        #expect(r["US"]?.udp == .deny)
        #expect(r["DE"]?.tcp == .deny)
    }

    @Test func inspectAllRelaysEverythingButLoopback() throws {
        let r = try rows("open")
        #expect(r["US"]?.tcp == .redirect && r["US"]?.udp == .pass)
        #expect(r["(unknown)"]?.tcp == .deny) // unknown: deny is the default setting
        #expect(r["loopback"]?.tcp == .pass)
        let builtIn = BordergateConfig.builtIn.policies["default"]!.compile(classes: classes, catalog: .builtIn)
        #expect(builtIn.allSatisfy { $0.tcp == .redirect || $0.quiet })
        #expect(builtIn.allSatisfy { $0.udp == .pass })
    }
}

@Suite struct ProcessMatching {
    @Test func exeGlobsStayInsideTheirDirectory() throws {
        let c = try parse("policies:\n  p:\n    allow:\n      - country: US\n        exe: /usr/bin/*\n")
        let p = try #require(c.policies["p"])
        let us = try facts("US", host: .none)
        #expect(p.evaluate(us, process: .init(exe: "/usr/bin/curl", uid: 0)) == .decided(.allow, rule: RuleRef.firstRule))
        // not plainly absolute: unknown, so the rule cannot decide (the proxy then refuses)
        #expect(p.evaluate(us, process: .init(exe: "/usr/bin/../../tmp/evil", uid: 0)) == .undecided(rule: RuleRef.firstRule))
        #expect(p.evaluate(us, process: .init(exe: "/usr//bin/./curl", uid: 0)) == .undecided(rule: RuleRef.firstRule))
        #expect(p.evaluate(us, process: .init(exe: "curl", uid: 0)) == .undecided(rule: RuleRef.firstRule))
        #expect(p.evaluate(us, process: .init(exe: "/usr/bin/sub/tool", uid: 0)) == .decided(.deny, rule: RuleRef.fallback))
        #expect(p.ruleNeedsProcess(RuleRef.firstRule))
        #expect(!p.ruleNeedsProcess(RuleRef.fallback))
    }

    @Test func aDenyThatHoldsEitherWayIsDecidedWithoutTheHostname() throws {
        // US is refused whether or not it is blocked.example: the kernel can refuse it alone.
        let c = try parse("policies:\n  p:\n    allow:\n      - jurisdiction: EU\n    deny:\n      - host: blocked.example\n")
        let p = try #require(c.policies["p"])
        #expect(p.evaluate(try facts("US"), process: .unknown) == .decided(.deny, rule: RuleRef.fallback))
        #expect(p.evaluate(try facts("DE"), process: .unknown) == .undecided(rule: RuleRef.firstRule))
    }
}

@Suite struct RuleOrderTests {
    @Test func oneRuleAtATimeMatchesTheOrderedList() {
        var p = Policy(name: "p")
        let grant = Grant(id: "g1", allow: "US", reason: "test", expires: 0, grantedBy: nil, endsBootNanos: 0)
        p.allow = [Rule(target: .countries(["US"]), grant: grant), Rule(target: .countries(["DE"])), Rule(target: .countries(["FR"]))]
        p.deny = [Rule(target: .countries(["RU"]))]
        let list = p.orderedRules
        #expect(list.map(\.action) == [.allow, .deny, .allow, .allow], "grants, then deny, then allow")
        for i in 0..<list.count {
            let one = p.orderedRule(i)
            #expect(one?.action == list[i].action && one?.index == list[i].index && one?.rule.description == list[i].rule.description)
        }
        #expect(p.orderedRule(list.count) == nil)
        #expect(p.orderedRule(-1) == nil)
    }
}
