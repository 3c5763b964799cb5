import ArgumentParser
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
                Output.policyCheck(file: file, cfg)
            }
        }
    }
}
