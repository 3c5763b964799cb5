#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
@testable import BordergateRegions

/// Replays what fuzzing found (fuzz/regressions/TARGET, in the harness's input form: see
/// fuzz/Harness/Harness.swift) through the readers: each input is read or refused with one line,
/// with no trap, and what was read stays within what the input can hold.
@Suite struct FuzzRegressionTests {
    static let regressions: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/fuzz/regressions"
    }()

    static func files(_ target: String) -> [String] {
        guard let dir = opendir(regressions + "/" + target) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(regressions + "/" + target + "/" + name) }
        }
        return names.sorted()
    }

    /// The harness's mapping from a fuzz input to a reader's input.
    static func readerInput(_ target: String, _ input: [UInt8]) -> (RegionTableFormat, [UInt8])? {
        switch target {
        case "mmdb": return (.mmdb, input)
        case "compiled":
            guard input.count >= 32, input[0] != 0 else { return (.compiled, input) }
            var bytes = input
            bytes.replaceSubrange(0..<8, with: CompiledRegionTables.magic)
            withUnsafeBytes(of: CompiledRegionTables.version.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
            withUnsafeBytes(of: UInt64(bytes.count - 32).littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
            withUnsafeBytes(of: CompiledRegionTables.fnv1a64(bytes[32...]).littleEndian) { bytes.replaceSubrange(24..<32, with: $0) }
            return (.compiled, bytes)
        case "csv":
            guard let first = input.first else { return nil }
            return (first & 1 == 0 ? .cidrCSV : .rangeCSV, Array(input.dropFirst()))
        case "json":
            guard let first = input.first else { return nil }
            return ([RegionTableFormat.aws, .gcp, .azure, .oracle][Int(first & 3)], Array(input.dropFirst()))
        default: return nil
        }
    }

    @Test(arguments: ["mmdb", "compiled", "csv", "json"])
    func replay(target: String) throws {
        let files = Self.files(target)
        if target == "mmdb" || target == "compiled" {
            #expect(!files.isEmpty, "no regression inputs in \(Self.regressions)/\(target)")
        }
        for file in files {
            let input = try RegionTableReader.readFile(file)
            guard let (format, bytes) = Self.readerInput(target, input) else { continue }
            let work = MMDBWork(fileSize: bytes.count)
            do {
                let tables = format == .mmdb
                    ? [try MMDBReader.read(bytes, path: file, name: "t", work: work)]
                    : try RegionTableReader.read(bytes: bytes, path: file, format: format)
                let entries = tables.reduce(0) { $0 + $1.entries.count }
                #expect(entries <= bytes.count + 1024, "\(file): \(entries) entries from \(bytes.count) bytes")
            } catch let e as RegionTableError {
                #expect(e.description.hasPrefix(file), "\(e)")
                #expect(!e.description.contains("\n"), "\(e)")
            }
            #expect(work.used <= work.limit + 1, "\(file): \(work.used) steps")
        }
    }
}
