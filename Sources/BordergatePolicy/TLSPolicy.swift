/// A policy's `tls:`: whether the proxy terminates its connections' TLS to see inside them.
public enum TLSMode: String, Sendable {
    /// TLS is relayed as it is and decided by its SNI (the default, and all a pinned client allows).
    case passthrough
    /// The tool's TLS is terminated with a leaf from the local CA and the destination's is
    /// originated and verified, so masking, recording and per-request verdicts see the content.
    case intercept
}

/// The config's top-level `tls:`: what interception trusts and what it leaves alone.
public struct TLSSettings: Sendable {
    /// PEM files of extra CAs for verifying destinations (an internal CA), beside the system's.
    public var trust: [String] = []
    /// Hosts never intercepted (still decided by their SNI): pinned clients.
    public var passthrough: [HostnameGlob] = []
    /// Hosts whose certificate is not verified; every such connection's event says so. There is
    /// no switch that turns verification off for every host.
    public var insecureHosts: [HostnameGlob] = []

    public init() {}

    public func isPassthrough(_ host: String) -> Bool { passthrough.contains { $0.matches(host) } }
    public func isInsecure(_ host: String) -> Bool { insecureHosts.contains { $0.matches(host) } }
}
