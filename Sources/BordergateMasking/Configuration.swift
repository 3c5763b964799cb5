import Crypto

/// A built-in detector. Its raw value is the name the policy uses (`detectors: [email, iban]`).
public enum BuiltinDetector: String, CaseIterable, Sendable, Hashable {
    case email
    case creditCard = "credit-card"
    case iban
    case usSSN = "us-ssn"
    case phone
    case ipAddress = "ip-address"
    case awsAccessKey = "aws-access-key"
    case jwt
    case privateKey = "private-key"
    case secretToken = "secret-token"
}

/// How a detected value is replaced.
public enum MaskStrategy: String, Sendable, Hashable, CaseIterable {
    /// The value becomes `[TYPE]`, e.g. `[EMAIL]`.
    case redact
    /// The last 4 characters are kept, every other one becomes `*`: the length is unchanged.
    case partial
    /// The value becomes `[TYPE:8 hex]`, the first 4 bytes of HMAC-SHA256(key, value): the same value
    /// masks the same way wherever it appears, so joins on masked data still work.
    case hash
}

/// A detector from the configuration (`maskers: {employee-id: 'EMP-[0-9]{6}'}`).
///
/// Custom detectors run a Swift `Regex`, which is much slower than the built-in scanner; in a stream
/// a match must lie within one line and be at most ``MaskingEngine/customMatchLimit`` bytes long.
public struct CustomDetector: Sendable {
    public let name: String
    public let pattern: String
    nonisolated(unsafe) let regex: Regex<AnyRegexOutput>

    /// Throws the regex compiler's error when `pattern` is not a valid regular expression.
    public init(name: String, pattern: String) throws {
        self.name = name
        self.pattern = pattern
        self.regex = try Regex(pattern)
    }
}

/// Everything the engine needs, as plain values a policy parser can fill in.
public struct MaskingConfiguration: Sendable {
    /// The built-in detectors that run; all of them by default.
    public var detectors: Set<BuiltinDetector>
    public var customDetectors: [CustomDetector]
    public var strategy: MaskStrategy
    /// Field names (JSON keys, later column names) whose values are masked whatever they hold.
    /// Case-insensitive globs: `*` matches any run of characters, `?` one character.
    public var fields: [String]
    /// The key of the `hash` strategy (the daemon keeps it in its state directory).
    public var hashKey: [UInt8]

    public init(detectors: Set<BuiltinDetector> = Set(BuiltinDetector.allCases), customDetectors: [CustomDetector] = [],
                strategy: MaskStrategy = .redact, fields: [String] = [], hashKey: [UInt8] = []) {
        self.detectors = detectors
        self.customDetectors = customDetectors
        self.strategy = strategy
        self.fields = fields
        self.hashKey = hashKey
    }
}

/// How many values were masked, per detector name and per field rule. Never holds a value.
public struct MaskCounts: Sendable, Equatable, CustomStringConvertible {
    /// Detector name (`email`, a custom name) → values it masked.
    public internal(set) var detectors: [String: Int] = [:]
    /// Field name as written in the data → values masked because of a field rule.
    public internal(set) var fields: [String: Int] = [:]

    public init() {}

    public var total: Int { detectors.values.reduce(0, +) + fields.values.reduce(0, +) }
    public var isEmpty: Bool { detectors.isEmpty && fields.isEmpty }

    public mutating func add(_ other: MaskCounts) {
        for (k, v) in other.detectors { detectors[k, default: 0] += v }
        for (k, v) in other.fields { fields[k, default: 0] += v }
    }

    public var description: String {
        (detectors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            + fields.sorted { $0.key < $1.key }.map { "field:\($0.key)=\($0.value)" }).joined(separator: " ")
    }
}

/// A value the scanner found: a byte range of the input and what found it.
public struct Detection: Sendable, Equatable {
    public let range: Range<Int>
    /// A built-in detector's name or a custom detector's name.
    public let detector: String
}

/// Case-insensitive glob matching for field rules.
struct FieldGlob: Sendable {
    let pattern: [UInt8]

    init(_ text: String) { pattern = Array(text.utf8).map(asciiLower) }

    func matches(_ name: some Collection<UInt8>) -> Bool {
        // asked for every JSON key: no copy of the name when it is contiguous already
        if let r = name.withContiguousStorageIfAvailable({ matches($0) }) { return r }
        return Array(name).withUnsafeBufferPointer { matches($0) }
    }

    private func matches(_ s: UnsafeBufferPointer<UInt8>) -> Bool {
        var p = 0, i = 0, star = -1, mark = 0
        while i < s.count {
            if p < pattern.count && (pattern[p] == UInt8(ascii: "?") || pattern[p] == asciiLower(s[i])) {
                p += 1; i += 1
            } else if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                star = p; mark = i; p += 1
            } else if star >= 0 {
                p = star + 1; mark += 1; i = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}

@inline(__always) func asciiLower(_ c: UInt8) -> UInt8 { c &- 65 < 26 ? c | 0x20 : c }
