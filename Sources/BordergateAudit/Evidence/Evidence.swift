import Crypto
import Foundation

/// What `bordergate audit` does, for the CLI to call (keys travel as the `ed25519:<base64>` text).
public enum Evidence {
    /// The public key of the log in `logDirectory`.
    public static func publicKey(logDirectory: String) throws -> String {
        SigningKey.format(try SigningKey.publicKey(forLogDirectory: logDirectory))
    }

    /// Verifies log files in order; `key` nil means the key beside the files, else the state
    /// directory's. The last checkpoint recorded beside the last file is compared with the log.
    public static func verify(files: [String], key: String?, stateLogDirectory: String) throws -> LogVerifier.Report {
        let dirs = files.map { ($0 as NSString).deletingLastPathComponent }
        let publicKey: Curve25519.Signing.PublicKey
        if let key {
            publicKey = try SigningKey.parsePublic(key)
        } else if let dir = dirs.last, let k = try? SigningKey.publicKey(forLogDirectory: dir.isEmpty ? "." : dir) {
            publicKey = k
        } else {
            publicKey = try SigningKey.publicKey(forLogDirectory: stateLogDirectory)
        }
        var verifier = LogVerifier(key: publicKey)
        if let dir = dirs.last {
            let head = AuditLog.headPath(forLogDirectory: dir.isEmpty ? "." : dir)
            if FileManager.default.fileExists(atPath: head) {
                verifier.expectHead(path: head)
            }
        }
        for f in files { verifier.verify(file: f) }
        var report = verifier.finish()
        if report.checkpoints > 0, let dir = dirs.last,
           !FileManager.default.fileExists(atPath: AuditLog.headPath(forLogDirectory: dir.isEmpty ? "." : dir)) {
            report.problems.append(.init(file: AuditLog.headPath(forLogDirectory: dir), line: 0, kind: .truncated,
                                         message: "the record of the last checkpoint is missing though the log has checkpoints: it was removed, and the log's tail may have been cut off"))
        }
        return report
    }

    /// Verifies an exported bundle. `keyFromBundle` says the key was the bundle's own.
    public static func verify(bundle: String, key: String?) throws -> (report: LogVerifier.Report, manifest: EvidenceBundle.Manifest, keyFromBundle: Bool) {
        let k = try key.map { try SigningKey.parsePublic($0) }
        let (report, manifest) = try EvidenceBundle.verify(bundle: bundle, key: k)
        return (report, manifest, k == nil)
    }

    /// Exports the events from `since` to `until` of the state directory's log. When it can (root),
    /// it first appends a checkpoint so the latest events are signed too.
    public static func export(logPath: String, since: Date, until: Date, to out: String) throws -> EvidenceBundle.Manifest {
        let dir = (logPath as NSString).deletingLastPathComponent
        if FileManager.default.isWritableFile(atPath: logPath), let log = try? AuditLog(path: logPath) {
            try? log.checkpoint()
        }
        // the rotated files too, in chain order: a period may span a rotation
        let files = AuditLog.rotatedHistory(logPath: logPath, since: since) + [logPath]
        return try EvidenceBundle.export(logFiles: files, since: since, until: until,
                                         publicKey: publicKey(logDirectory: dir), to: out)
    }
}
