import ArgumentParser
import BordergateRegions
import BordergateService
import Foundation

extension RegionsCommand {
    struct Compile: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compile",
            abstract: "Read region tables in any supported format and write Bordergate's compiled table.",
            discussion: """
                Each INPUT is PATH, PATH:FORMAT or PATH:FORMAT:NAME. Formats: \(RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", ")). \
                Earlier inputs win on equal prefixes.

                  bordergate regions compile --out /var/lib/bordergate/regions/own.bgrt ranges.csv:cidr-csv:onprem ip-ranges.json:aws
                """)

        @Option(help: ArgumentHelp("Where to write the compiled table.", valueName: "file"))
        var out: String

        @Argument(help: ArgumentHelp("Input tables.", valueName: "input"))
        var inputs: [String]

        func run() async throws {
            try await reportingErrors {
                var tables: [RegionTable] = []
                for input in inputs {
                    let parts = input.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
                    var format: RegionTableFormat?
                    if parts.count > 1 {
                        guard let f = RegionTableFormat(rawValue: parts[1]) else {
                            throw ServiceError("\(input): unknown format '\(parts[1])'; expected one of \(RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        format = f
                    }
                    let read = try RegionTableReader.read(path: parts[0], format: format, name: parts.count > 2 ? parts[2] : nil)
                    for t in read { print("\(t.name): \(t.entries.count) prefixes from \(parts[0])") }
                    tables += read
                }
                let bytes = CompiledRegionTables.encode(tables)
                let dir = (out as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                let tmp = out + ".new"
                guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
                    throw ServiceError("cannot write \(tmp): \(String(cString: strerror(errno)))")
                }
                guard rename(tmp, out) == 0 else { throw ServiceError("cannot replace \(out): \(String(cString: strerror(errno)))") }
                print("wrote \(out) (\(bytes.count) bytes)")
            }
        }
    }
}
