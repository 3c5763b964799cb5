#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum RegionTableReader {
    /// Reads a file; the format is sniffed when not given. The default table name is the
    /// provider for cloud JSON ("aws"), else the file name without its extension.
    public static func read(path: String, format: RegionTableFormat? = nil, name: String? = nil) throws -> [RegionTable] {
        let bytes = try readFile(path)
        guard let format = format ?? RegionTableFormat.detect(path: path, bytes: bytes) else {
            throw RegionTableError(path: path, location: .line(1), problem: "the format of the file could not be recognised",
                                   expected: "one of " + RegionTableFormat.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return try read(bytes: bytes, path: path, format: format, name: name)
    }

    /// For a compiled file with several tables, `name` renames only a file that holds exactly one.
    public static func read(bytes: [UInt8], path: String, format: RegionTableFormat, name: String? = nil) throws -> [RegionTable] {
        let tableName = name ?? defaultName(path: path, format: format)
        switch format {
        case .cidrCSV: return [try TextTableReader.readCIDR(bytes, path: path, name: tableName)]
        case .rangeCSV: return [try TextTableReader.readRanges(bytes, path: path, name: tableName)]
        case .aws, .gcp, .azure, .oracle:
            return [try CloudJSONReader.read(bytes, path: path, format: format, name: tableName)]
        case .mmdb: return [try MMDBReader.read(bytes, path: path, name: tableName)]
        case .compiled:
            var tables = try CompiledRegionTables.decode(bytes, path: path)
            if let name, tables.count == 1 { tables[0].name = name }
            return tables
        }
    }

    static func defaultName(path: String, format: RegionTableFormat) -> String {
        switch format {
        case .aws, .gcp, .azure, .oracle: return format.rawValue
        default:
            var file = path.split(separator: "/").last.map(String.init) ?? path
            if let dot = file.lastIndex(of: "."), dot != file.startIndex { file = String(file[..<dot]) }
            return file.isEmpty ? format.rawValue : file
        }
    }

    /// The whole file, with errno turned into a one-line error.
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RegionTableError(path: path, problem: "cannot open: \(errorText(errno))", expected: "a readable file") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RegionTableError(path: path, problem: "cannot stat: \(errorText(errno))", expected: "a readable file") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw RegionTableError(path: path, problem: "not a regular file", expected: "a readable file") }
        var out: [UInt8] = []
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw RegionTableError(path: path, problem: "cannot read: \(errorText(errno))", expected: "a readable file")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    static func errorText(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "errno \(code)" }
        return String(cString: s)
    }
}

/// `read(2)`, named apart from `RegionTableReader.read`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
