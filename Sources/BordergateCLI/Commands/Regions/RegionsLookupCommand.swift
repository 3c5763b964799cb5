import ArgumentParser
import BordergateRegions
import BordergateService
import Foundation

extension RegionsCommand {
    struct Lookup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lookup",
            abstract: "Region, country and jurisdictions of addresses, and which table and prefix said so.",
            discussion: "  bordergate regions lookup 198.51.100.7 2001:db8::1 -o json")

        @OptionGroup var common: CommonOptions

        @Option(name: .shortAndLong, help: "Output: text or json (one object per address).")
        var output: TextOrJSON = .text

        @Flag(help: "Also print how long loading the tables took.")
        var timing = false

        @Argument(help: "IPv4 or IPv6 addresses.")
        var addresses: [String]

        func validate() throws {
            if addresses.isEmpty { throw ValidationError("give at least one address") }
            for a in addresses where IPAddress(a) == nil { throw ValidationError("'\(a)' is not an IPv4 or IPv6 address") }
        }

        func run() async throws {
            try await reportingErrors {
                let started = Date()
                let cfg = try ResidencyConfig.load(settings: common.settings)
                if timing {
                    Output.note("loaded \(cfg.database.tables.count) table(s) in \(String(format: "%.0f", Date().timeIntervalSince(started) * 1000)) ms")
                }
                for a in addresses {
                    try Output.lookup(a, cfg.database.lookup(IPAddress(a)!), as: output)
                }
            }
        }
    }
}
