import ArgumentParser
import BordergateRegions
import BordergateService

extension RegionsCommand {
    struct Benchmark: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "benchmark", abstract: "Time loading the configured tables and looking addresses up (for scripts/bench).",
            shouldDisplay: false)

        @OptionGroup var common: CommonOptions

        @Option(help: "Lookups per family.")
        var count = 1_000_000

        func run() async throws {
            try await reportingErrors {
                let clock = ContinuousClock()
                var cfg: ResidencyConfig?
                let load = try clock.measure { cfg = try ResidencyConfig.load(settings: common.settings) }
                let db = cfg!.database
                var rng = SystemRandomNumberGenerator()
                let v4 = (0..<count).map { _ in IPAddress(ipv4: UInt32.random(in: 0...UInt32.max, using: &rng)) }
                // IPv6 from the allocated space (2000::/3), where the tables have entries
                let v6 = (0..<count).map { _ in IPAddress(value: (UInt128(0x2) << 125) | (UInt128(UInt64.random(in: 0...UInt64.max, using: &rng)) << 61)) }
                var hits = 0
                let t4 = clock.measure { for ip in v4 where db.lookup(ip) != nil { hits += 1 } }
                let t6 = clock.measure { for ip in v6 where db.lookup(ip) != nil { hits += 1 } }
                func ns(_ d: Duration) -> Double { Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9 }
                let prefixes = db.tables.reduce(0) { $0 + $1.ipv4Count + $1.ipv6Count }
                print("{\"prefixes\":\(prefixes),\"load_ms\":\((ns(load) / 1e6).rounded()),\"lookup_ns_ipv4\":\((ns(t4) / Double(count) * 10).rounded() / 10),\"lookup_ns_ipv6\":\((ns(t6) / Double(count) * 10).rounded() / 10),\"hits\":\(hits)}")
            }
        }
    }
}
