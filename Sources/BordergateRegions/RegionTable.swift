/// One named list of prefixes and the region each belongs to.
///
/// Region names: ISO 3166 alpha-2 in upper case for country tables ("DE"); "provider:region" in
/// lower case for cloud tables ("aws:eu-central-1").
public struct RegionTable: Sendable {
    public struct Entry: Sendable, Hashable {
        public var prefix: IPPrefix
        public var region: String
        public init(prefix: IPPrefix, region: String) {
            self.prefix = prefix
            self.region = region
        }
    }

    /// What a database keeps of a table once its entries are merged into the lookup structure.
    public struct Summary: Sendable, Hashable {
        public var name: String
        public var source: String
        public var ipv4Count: Int
        public var ipv6Count: Int
    }

    public var name: String
    public var source: String
    public var entries: [Entry]

    public init(name: String, source: String, entries: [Entry]) {
        self.name = name
        self.source = source
        self.entries = entries
    }

    public var summary: Summary {
        var v4 = 0
        for e in entries where e.prefix.address.isIPv4 { v4 += 1 }
        return Summary(name: name, source: source, ipv4Count: v4, ipv6Count: entries.count - v4)
    }
}

public enum RegionTableFormat: String, Sendable, CaseIterable {
    case cidrCSV = "cidr-csv", rangeCSV = "range-csv", aws, gcp, azure, oracle, mmdb, compiled

    static let mmdbMarker: [UInt8] = [0xAB, 0xCD, 0xEF] + Array("MaxMind.com".utf8)

    /// By content first (magic numbers, JSON keys, the first data line), by extension second.
    public static func detect(path: String, bytes: [UInt8]) -> RegionTableFormat? {
        if bytes.starts(with: CompiledRegionTables.magic) { return .compiled }
        if bytes.count >= mmdbMarker.count,
           lastIndex(of: mmdbMarker, in: bytes, searchingLast: 128 * 1024) != nil { return .mmdb }
        // JSON: decide by the keys that only one provider uses, within the first 64 KiB.
        let head = bytes.prefix(64 * 1024)
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF] // the readers skip it: so does the guess
        if let first = head.dropFirst(head.starts(with: bom) ? 3 : 0).first(where: { !isSpace($0) }), first == UInt8(ascii: "{") {
            let text = String(decoding: head, as: UTF8.self)
            if text.contains("\"ip_prefix\"") || text.contains("\"ipv6_prefix\"") || text.contains("\"syncToken\"") && text.contains("\"createDate\"") { return .aws }
            if text.contains("\"ipv4Prefix\"") || text.contains("\"ipv6Prefix\"") { return .gcp }
            if text.contains("\"addressPrefixes\"") || text.contains("\"changeNumber\"") { return .azure }
            if text.contains("\"cidrs\"") || text.contains("\"last_updated_timestamp\"") { return .oracle }
        }
        // Text: the first line that is neither blank nor a comment, cut as the readers cut it.
        if let format = firstLineFormat(bytes) { return format }
        let lower = path.lowercased()
        if lower.hasSuffix(".mmdb") { return .mmdb }
        if lower.hasSuffix(".bgregions") || lower.hasSuffix(".bgrt") { return .compiled }
        let file = lower.split(separator: "/").last.map(String.init) ?? lower
        if file == "geoip" || file == "geoip6" { return .rangeCSV }
        if file.hasSuffix(".csv") { return .cidrCSV }
        return nil
    }

    /// cidr-csv ("prefix,region", or its header) or range-csv ("first,last,country") by the first
    /// data line; nil for anything else.
    private static func firstLineFormat(_ bytes: [UInt8]) -> RegionTableFormat? {
        struct Stop: Error { let format: RegionTableFormat? }
        do {
            try TextTableReader.forEachLine(bytes) { p, _, start, end in
                func text(_ s: Int, _ e: Int) -> String { String(decoding: UnsafeBufferPointer(rebasing: p[s..<e]), as: UTF8.self) }
                var f2 = (0, 0, 0, 0), f3 = (0, 0, 0, 0, 0, 0)
                if TextTableReader.split2(p, start, end, &f2) == 2 {
                    let first = text(f2.0, f2.1)
                    throw Stop(format: IPPrefix(first) != nil || first.lowercased() == "prefix" ? .cidrCSV : nil)
                }
                if TextTableReader.split3(p, start, end, &f3) == 3 {
                    let first = text(f3.0, f3.1)
                    throw Stop(format: IPAddress(first) != nil || UInt32(first) != nil ? .rangeCSV : nil)
                }
                throw Stop(format: nil)
            }
        } catch let stop as Stop {
            return stop.format
        } catch {}
        return nil
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 10 || c == 13 }

    static func lastIndex(of needle: [UInt8], in bytes: [UInt8], searchingLast window: Int) -> Int? {
        guard bytes.count >= needle.count else { return nil }
        let lowest = max(0, bytes.count - window)
        var i = bytes.count - needle.count
        while i >= lowest {
            if bytes[i] == needle[0] {
                var k = 1
                while k < needle.count && bytes[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i -= 1
        }
        return nil
    }
}

/// One line: "<path>:<line>: <what is wrong>; expected <what>", or "<path>: at byte <offset>: ..."
/// for binary formats.
public struct RegionTableError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Location: Sendable, Equatable {
        case none
        case line(Int)
        case byteOffset(Int)
    }
    public var path: String
    public var location: Location
    public var problem: String
    public var expected: String

    public init(path: String, location: Location = .none, problem: String, expected: String) {
        self.path = path
        self.location = location
        self.problem = problem
        self.expected = expected
    }

    public var description: String {
        let place: String
        switch location {
        case .none: place = "\(path)"
        case .line(let n): place = "\(path):\(n)"
        case .byteOffset(let n): place = "\(path): at byte \(n)"
        }
        return "\(place): \(problem); expected \(expected)".replacingNewlines
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\r" || c == "\n" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" || c == "\n" { s.removeLast() }
        return String(s)
    }

    var replacingNewlines: String {
        String(map { $0.isNewline ? " " : $0 })   // also CRLF, one Character
    }

    /// For error messages: short, printable, quoted.
    var quotedForError: String {
        let shown = count > 60 ? String(prefix(60)) + "…" : self
        return "\"" + String(shown.map { $0.isASCII && ($0.asciiValue! < 32 || $0.asciiValue! == 127) ? "?" : $0 }) + "\""
    }
}
