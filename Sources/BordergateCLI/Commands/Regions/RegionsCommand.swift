import ArgumentParser

struct RegionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regions", abstract: "Region tables: look addresses up, compile tables.",
        discussion: "The tables are the ones the config names (see 'bordergate policy check').",
        subcommands: [Lookup.self, Compile.self, Benchmark.self])
}
