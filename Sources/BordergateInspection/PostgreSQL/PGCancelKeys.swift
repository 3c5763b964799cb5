import NIOConcurrencyHelpers

/// The backend keys (BackendKeyData: process id and secret) of the sessions through this proxy,
/// so a CancelRequest, which arrives on a connection of its own, is recorded against the session
/// it cancels. Keyed by the bytes both messages carry (protocol 3.2 allows longer secrets).
final class PGCancelKeys: Sendable {
    private let keys = NIOLockedValueBox<[[UInt8]: String]>([:])

    func register(_ key: [UInt8], session: String) { keys.withLockedValue { $0[key] = session } }

    func remove(session: String) { keys.withLockedValue { $0 = $0.filter { $0.value != session } } }

    func session(for key: [UInt8]) -> String? { keys.withLockedValue { $0[key] } }
}
