/// A hostname pattern for policies, matched case-insensitively label by label.
///
/// - A `*` that is the whole leftmost label stands for one or more whole labels:
///   `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
///   The pattern `*` alone therefore matches every non-empty hostname.
/// - Any other `*` stands for zero or more characters within its own label only:
///   `api-*.example.com` matches `api-v2.example.com`, not `api-v2.eu.example.com`.
/// - A trailing dot on the pattern or the host is ignored.
///
/// Self-contained: it depends on nothing else in this module.
public struct HostnameGlob: Sendable, Hashable, CustomStringConvertible {
    /// The pattern lower-cased, without a trailing dot.
    public let pattern: String
    /// Whether the leftmost label was a lone `*`; it is not among `labels` then.
    private let leadingWildcard: Bool
    /// The remaining labels, right-most last, lower-cased.
    private let labels: [[UInt8]]

    /// Nil for an empty pattern, an empty label (`a..b`, `.a`), or any character outside
    /// letters, digits, `-`, `.`, `*` and `_` (spaces included).
    public init?(_ pattern: String) {
        var bytes: [UInt8] = []
        for byte in pattern.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "*"), UInt8(ascii: "_"):
                bytes.append(byte)
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                bytes.append(byte + 32)
            default:
                return nil
            }
        }
        guard let labels = Self.labels(of: bytes) else { return nil }
        self.pattern = String(decoding: Array(labels.joined(separator: [UInt8(ascii: ".")])), as: UTF8.self)
        if labels.first == [UInt8(ascii: "*")] {
            self.leadingWildcard = true
            self.labels = Array(labels.dropFirst())
        } else {
            self.leadingWildcard = false
            self.labels = labels
        }
    }

    public var description: String { pattern }

    public func matches(_ host: String) -> Bool {
        let lowered = host.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        guard let hostLabels = Self.labels(of: lowered) else { return false }
        if leadingWildcard {
            guard hostLabels.count > labels.count else { return false }
        } else {
            guard hostLabels.count == labels.count else { return false }
        }
        // Compare from the right; with a leading wildcard the extra labels on the left are its.
        for (patternLabel, hostLabel) in zip(labels.reversed(), hostLabels.reversed())
        where !Self.label(hostLabel, matches: patternLabel) {
            return false
        }
        return true
    }

    /// The labels of a name with at most one trailing dot; nil when the name is empty or has an
    /// empty label.
    private static func labels(of name: [UInt8]) -> [[UInt8]]? {
        var name = name[...]
        if name.last == UInt8(ascii: ".") { name = name.dropLast() }
        guard !name.isEmpty else { return nil }
        let labels = name.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.allSatisfy({ !$0.isEmpty }) else { return nil }
        return labels.map(Array.init)
    }

    /// Glob match of one label where `*` is zero or more bytes: the classic linear walk that
    /// remembers the last star and retries from one byte further on a mismatch.
    private static func label(_ label: [UInt8], matches pattern: [UInt8]) -> Bool {
        let star = UInt8(ascii: "*")
        var p = 0, l = 0
        var lastStar: Int?, resumeAt = 0
        while l < label.count {
            if p < pattern.count, pattern[p] != star, pattern[p] == label[l] {
                p += 1; l += 1
            } else if p < pattern.count, pattern[p] == star {
                lastStar = p; resumeAt = l; p += 1
            } else if let starIndex = lastStar {
                p = starIndex + 1; resumeAt += 1; l = resumeAt
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == star { p += 1 }
        return p == pattern.count
    }
}
