import ArgumentParser
import BordergateAudit

/// `-o` of `status` and `regions lookup`.
enum TextOrJSON: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// `-o` of `events`.
enum EventOutput: String, ExpressibleByArgument, CaseIterable {
    /// One line per event for a terminal.
    case compact
    /// The event's JSON exactly as the log holds it, one per line.
    case json
    /// Fixed columns with a header: time, type, verdict, process, destination, policy, reason.
    case table
}

/// `--verdict`: the verdicts Bordergate writes. A word it does not write is an error here rather
/// than a filter that silently matches nothing.
extension Verdict: ExpressibleByArgument {
    public init?(argument: String) {
        let v = Verdict(rawValue: argument)
        guard Verdict.known.contains(v) else { return nil }
        self = v
    }

    public static var allValueStrings: [String] { known.map(\.rawValue) }
}

/// `--type`.
extension AuditEvent.Kind: ExpressibleByArgument {}
