import BordergateCertificates
import BordergateInspection
import BordergatePolicy
import Foundation
import CBordergateSys
import Logging
import NIOConcurrencyHelpers

/// What TLS interception uses, built from the configuration in force and the state directory's
/// CA: rebuilt when a reload publishes another configuration, and when `bordergate ca rotate`
/// replaces the CA (its leaves are dropped with it). When it cannot be built, interception is
/// refused (fail closed) and the reason is logged once per cause.
final class TLSInterceptionProvider: Sendable {
    let residency: Residency
    let files: LocalCA.Files
    let logger: Logger
    private struct Built {
        var snapshot: ResidencySnapshot
        var caStamp: CAStamp
        var interception: TLSInterception?
        var lastError: String?
        /// When building last failed: the next try waits a while, rather than every intercepted
        /// connection rebuilding contexts (system roots, PEM files) on its event loop.
        var failedAt: ContinuousClock.Instant?
    }
    static let retryAfter = Duration.seconds(5)
    private let cache = NIOLockedValueBox<Built?>(nil)

    init(residency: Residency, settings: Settings, logger: Logger) {
        self.residency = residency
        files = LocalCA.Files(stateDirectory: settings.stateDirectory)
        self.logger = logger
    }

    /// Whether any policy of the configuration intercepts: the CA is made at start then, so
    /// `bordergate exec` and `ca export` find it.
    static func intercepts(_ config: BordergateConfig) -> Bool {
        config.policies.values.contains { $0.tls == .intercept }
    }

    func current() -> TLSInterception? {
        let snapshot = residency.snapshot
        let stamp = CAStamp(path: files.certificate)
        return cache.withLockedValue { built -> TLSInterception? in
            if let b = built, b.snapshot === snapshot, b.caStamp == stamp {
                if b.interception != nil { return b.interception }
                if let failed = b.failedAt, ContinuousClock.now - failed < Self.retryAfter { return nil }
            }
            let previousError = built?.lastError
            do {
                let ca = try LocalCA.loadOrCreate(files)
                let tls = snapshot.config.config.tls
                let interception = try TLSInterception(ca: ca, trustFiles: tls.trust,
                                                       isPassthrough: tls.isPassthrough, isInsecure: tls.isInsecure)
                built = Built(snapshot: snapshot, caStamp: CAStamp(path: files.certificate), interception: interception)
                return interception
            } catch {
                let text = "\(error)"
                if text != previousError {
                    logger.error("tls: interception is off, its connections are refused: \(text)")
                }
                built = Built(snapshot: snapshot, caStamp: stamp, interception: nil, lastError: text, failedAt: .now)
                return nil
            }
        }
    }
}

/// Identifies the CA file's version cheaply (one stat per intercepted connection).
struct CAStamp: Equatable, Sendable {
    var inode: UInt64 = 0
    var mtime: Int = 0
    var mtimeNanos: Int = 0

    init(path: String) {
        var id = bg_file_identity()
        guard bg_file_identity(path, &id) == 0 else { return }
        inode = id.inode
        mtime = Int(id.mtime_sec)
        mtimeNanos = Int(id.mtime_nsec)
    }
}
