import BordergateMasking

/// A policy's `mask:` block: which detectors run, how values are replaced, which JSON fields and
/// HTTP headers are masked whatever they hold, and what happens when content cannot be masked.
public struct MaskPolicy: Sendable {
    /// What a connection gets when its content cannot be masked (a body that is not what its
    /// headers say, a decoding error): `block` ends the exchange so nothing unmasked reaches the
    /// tool; `pass` relays the rest unmasked, and the event says so.
    public enum OnError: String, Sendable { case block, pass }

    public var detectors: Set<BuiltinDetector> = Set(BuiltinDetector.allCases)
    /// Names from the config's `maskers:` that run as well.
    public var custom: [String] = []
    /// `detectors: all`: every built-in detector and every masker of the config.
    public var allMaskers = true
    public var strategy: MaskStrategy = .redact
    /// JSON keys whose values are always masked (case-insensitive globs).
    public var fields: [String] = []
    /// HTTP header names (lowercased) whose values are masked: response headers on the wire,
    /// request headers in the recording only (the tool's request reaches the destination as sent).
    public var headers: [String] = []
    public var onError: OnError = .block
    /// Where it was written ("file:line:column").
    public var origin: String = ""

    public init() {}

    /// The engine's configuration, with the custom detectors it names and the hash strategy's key.
    public func configuration(maskers: [String: CustomDetector], hashKey: [UInt8]) -> MaskingConfiguration {
        let names = allMaskers ? maskers.keys.sorted() : custom
        return MaskingConfiguration(detectors: detectors, customDetectors: names.compactMap { maskers[$0] },
                             strategy: strategy, fields: fields, hashKey: hashKey)
    }
}
