import ArgumentParser
import BordergatePolicy
import BordergateRegions
import BordergateService

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Work with policy files.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate a config file and the tables it names; errors name file:line:column.",
            discussion: "Needs no daemon: run it before 'bordergate reload'.\n\n  bordergate policy check /etc/bordergate/config.yaml")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The config file.")
        var file: String

        func run() async throws {
            try await reportingErrors {
                var settings = common.settings
                settings.configPath = file
                let cfg = try ResidencyConfig.load(settings: settings)
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
    }
}
