/// A small JSON reader that remembers the line of every object and array, so errors about the
/// content (not only the syntax) can name a line.
indirect enum JSONValue {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue], line: Int)
    case object([String: JSONValue], line: Int)

    subscript(key: String) -> JSONValue? {
        if case .object(let members, _) = self { return members[key] }
        return nil
    }

    var line: Int? {
        switch self {
        case .array(_, let line), .object(_, let line): return line
        default: return nil
        }
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var arrayValue: [JSONValue]? {
        if case .array(let a, _) = self { return a }
        return nil
    }

    var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

struct JSONParser {
    struct Failure: Error {
        var line: Int
        var problem: String
        var expected: String
    }

    static let maxDepth = 256

    static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (p) throws(Failure) -> JSONValue in
            var parser = JSONParser(p: p)
            if p.count >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF { parser.i = 3 }
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            if parser.i < p.count { throw parser.fail("text after the end of the JSON document", "nothing") }
            return value
        }
    }

    let p: UnsafeBufferPointer<UInt8>
    var i = 0
    var line = 1

    func fail(_ problem: String, _ expected: String) -> Failure {
        Failure(line: line, problem: problem, expected: expected)
    }

    var found: String {
        guard i < p.count else { return "the end of the file" }
        let c = p[i]
        if c >= 32 && c < 127 { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x\(String(c, radix: 16))"
    }

    mutating func skipSpace() {
        while i < p.count {
            switch p[i] {
            case 10: line += 1; i += 1
            case 32, 9, 13: i += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw fail("JSON nested deeper than \(JSONParser.maxDepth) levels", "a shallower document") }
        guard i < p.count else { throw fail("the file ends where a value should start", "a JSON value") }
        switch p[i] {
        case UInt8(ascii: "{"):
            let startLine = line
            i += 1
            var members: [String: JSONValue] = [:]
            skipSpace()
            if i < p.count && p[i] == UInt8(ascii: "}") { i += 1; return .object(members, line: startLine) }
            while true {
                skipSpace()
                guard i < p.count, p[i] == UInt8(ascii: "\"") else { throw fail("\(found) where a member name should be", "a quoted member name") }
                let key = try string()
                skipSpace()
                guard i < p.count, p[i] == UInt8(ascii: ":") else { throw fail("\(found) after a member name", "':'") }
                i += 1
                skipSpace()
                members[key] = try value(depth: depth + 1)
                skipSpace()
                guard i < p.count else { throw fail("the file ends inside an object", "',' or '}'") }
                if p[i] == UInt8(ascii: ",") { i += 1; continue }
                if p[i] == UInt8(ascii: "}") { i += 1; return .object(members, line: startLine) }
                throw fail("\(found) inside an object", "',' or '}'")
            }
        case UInt8(ascii: "["):
            let startLine = line
            i += 1
            var items: [JSONValue] = []
            skipSpace()
            if i < p.count && p[i] == UInt8(ascii: "]") { i += 1; return .array(items, line: startLine) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < p.count else { throw fail("the file ends inside an array", "',' or ']'") }
                if p[i] == UInt8(ascii: ",") { i += 1; continue }
                if p[i] == UInt8(ascii: "]") { i += 1; return .array(items, line: startLine) }
                throw fail("\(found) inside an array", "',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), 48...57:
            let s = i
            while i < p.count, let c = Optional(p[i]), (c >= 48 && c <= 57) || c == 45 || c == 43 || c == 46 || c == 101 || c == 69 { i += 1 }
            guard let d = Double(String(decoding: UnsafeBufferPointer(rebasing: p[s..<i]), as: UTF8.self)) else {
                throw fail("a malformed number", "a JSON number")
            }
            return .number(d)
        default:
            throw fail("\(found) where a value should start", "a JSON value")
        }
    }

    mutating func literal(_ word: StaticString) throws(Failure) {
        let n = word.utf8CodeUnitCount
        guard i + n <= p.count else { throw fail("the file ends inside a literal", "\(word)") }
        for k in 0..<n where p[i + k] != word.utf8Start[k] { throw fail("\(found) where a value should start", "a JSON value") }
        i += n
    }

    mutating func string() throws(Failure) -> String {
        i += 1 // opening quote
        let s = i
        // Fast path: no escapes.
        while i < p.count && p[i] != UInt8(ascii: "\"") && p[i] != UInt8(ascii: "\\") {
            if p[i] == 10 { throw fail("a line break inside a string", "'\"' before the end of the line") }
            i += 1
        }
        guard i < p.count else { throw fail("the file ends inside a string", "'\"'") }
        if p[i] == UInt8(ascii: "\"") {
            i += 1
            return String(decoding: UnsafeBufferPointer(rebasing: p[s..<(i - 1)]), as: UTF8.self)
        }
        var out = Array(UnsafeBufferPointer(rebasing: p[s..<i]))
        while true {
            guard i < p.count else { throw fail("the file ends inside a string", "'\"'") }
            let c = p[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c == 10 { throw fail("a line break inside a string", "'\"' before the end of the line") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < p.count else { throw fail("the file ends inside a string", "'\"'") }
            let e = p[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                // A high surrogate pairs with a following low one; a lone one becomes U+FFFD, and
                // whatever \u escape follows it is then decoded on its own, not dropped.
                while scalar >= 0xD800 && scalar < 0xDC00, i + 1 < p.count, p[i] == UInt8(ascii: "\\"), p[i + 1] == UInt8(ascii: "u") {
                    i += 2
                    let next = try hex4()
                    if next >= 0xDC00 && next < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (next - 0xDC00)
                        break
                    }
                    append(0xFFFD, to: &out)
                    scalar = next
                }
                append(scalar, to: &out)
            default:
                throw fail("an unknown escape '\\\(Character(Unicode.Scalar(e)))' in a string", "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// UTF-8 of `scalar`, U+FFFD for a surrogate.
    func append(_ scalar: UInt32, to out: inout [UInt8]) {
        out.append(contentsOf: (Unicode.Scalar(scalar) ?? "\u{FFFD}").utf8)
    }

    mutating func hex4() throws(Failure) -> UInt32 {
        guard i + 4 <= p.count else { throw fail("the file ends inside a \\u escape", "four hex digits") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let d = IPAddress.hexValue(p[i]) else { throw fail("\(found) inside a \\u escape", "four hex digits") }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }
}

/// AWS ip-ranges.json, Google Cloud cloud.json, Azure Service Tags, Oracle public_ip_ranges.json.
enum CloudJSONReader {
    static func read(_ bytes: [UInt8], path: String, format: RegionTableFormat, name: String) throws -> RegionTable {
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw RegionTableError(path: path, location: .line(error.line), problem: error.problem, expected: error.expected)
        }
        guard case .object = root else {
            throw RegionTableError(path: path, location: .line(1), problem: "the document is \(root.kind)", expected: "a JSON object")
        }
        var reader = Collector(path: path)
        switch format {
        case .aws:
            try reader.each(root, "prefixes", in: "AWS ip-ranges.json", optional: false) { item in
                try reader.add(item, prefixKey: "ip_prefix", regionKey: "region", provider: "aws")
            }
            try reader.each(root, "ipv6_prefixes", in: "AWS ip-ranges.json", optional: true) { item in
                try reader.add(item, prefixKey: "ipv6_prefix", regionKey: "region", provider: "aws")
            }
        case .gcp:
            try reader.each(root, "prefixes", in: "Google Cloud cloud.json", optional: false) { item in
                let key = item["ipv4Prefix"] != nil ? "ipv4Prefix" : "ipv6Prefix"
                try reader.add(item, prefixKey: key, regionKey: "scope", provider: "gcp")
            }
        case .azure:
            try reader.each(root, "values", in: "Azure Service Tags JSON", optional: false) { item in
                guard let props = item["properties"], case .object = props else {
                    throw reader.error(item, "a service tag without \"properties\"", "an object with \"properties\"")
                }
                let region = try reader.string(props, "region", optional: true) ?? ""
                guard let list = props["addressPrefixes"] else {
                    throw reader.error(props, "service tag properties without \"addressPrefixes\"", "an array of prefixes")
                }
                guard let prefixes = list.arrayValue else {
                    throw reader.error(props, "\"addressPrefixes\" is \(list.kind)", "an array of prefixes")
                }
                for p in prefixes {
                    guard let text = p.stringValue else {
                        throw reader.error(props, "an address prefix that is \(p.kind)", "a string such as \"20.38.64.0/19\"")
                    }
                    try reader.add(prefix: text, region: region, provider: "azure", at: props)
                }
            }
        case .oracle:
            try reader.each(root, "regions", in: "Oracle public_ip_ranges.json", optional: false) { item in
                let region = try reader.string(item, "region", optional: false) ?? ""
                try reader.each(item, "cidrs", in: "an Oracle region", optional: false) { cidr in
                    guard let text = try reader.string(cidr, "cidr", optional: false) else { return }
                    try reader.add(prefix: text, region: region, provider: "oracle", at: cidr)
                }
            }
        default:
            preconditionFailure("not a JSON format: \(format)")
        }
        return RegionTable(name: name, source: path, entries: reader.builder.entries)
    }

    struct Collector {
        let path: String
        var builder = TableBuilder()

        func error(_ at: JSONValue, _ problem: String, _ expected: String) -> RegionTableError {
            RegionTableError(path: path, location: at.line.map { .line($0) } ?? .none, problem: problem, expected: expected)
        }

        func each(_ parent: JSONValue, _ key: String, in what: String, optional: Bool,
                  _ body: (JSONValue) throws -> Void) throws {
            guard let value = parent[key] else {
                if optional { return }
                throw error(parent, "\(what) has no \"\(key)\"", "an array \"\(key)\"")
            }
            guard let items = value.arrayValue else {
                throw error(parent, "\"\(key)\" is \(value.kind)", "an array")
            }
            for item in items {
                guard case .object = item else {
                    throw error(value, "an element of \"\(key)\" is \(item.kind)", "an object")
                }
                try body(item)
            }
        }

        func string(_ object: JSONValue, _ key: String, optional: Bool) throws -> String? {
            guard let v = object[key] else {
                if optional { return nil }
                throw error(object, "an object without \"\(key)\"", "a string \"\(key)\"")
            }
            if case .null = v, optional { return nil }
            guard let s = v.stringValue else { throw error(object, "\"\(key)\" is \(v.kind)", "a string") }
            return s
        }

        mutating func add(_ item: JSONValue, prefixKey: String, regionKey: String, provider: String) throws {
            let text = try string(item, prefixKey, optional: false) ?? ""
            let region = try string(item, regionKey, optional: true) ?? ""
            try add(prefix: text, region: region, provider: provider, at: item)
        }

        mutating func add(prefix text: String, region: String, provider: String, at: JSONValue) throws {
            guard let prefix = IPPrefix(text.trimmingSpaces) else {
                throw error(at, "\(text.quotedForError) is not an IP prefix", "an IPv4 or IPv6 prefix such as 198.51.100.0/24")
            }
            let r = region.trimmingSpaces.lowercased()
            // Prefixes announced everywhere ("GLOBAL", "global", no region) say nothing about residency.
            if r.isEmpty || r == "global" { return }
            builder.add(prefix, region: builder.region(provider + ":" + r))
        }
    }
}
