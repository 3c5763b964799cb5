/// Why evidence (the signing key, a bundle, an export) could not be made or read: one line that says
/// what and where, and what to do.
public struct EvidenceError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
