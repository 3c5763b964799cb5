import BordergateAudit
import BordergateKernel
import BordergatePolicy
import Foundation

extension Interceptor {
    /// The config's `audit:` keys: rotation past a size, retention of rotated files.
    static func applyAuditRotation(_ c: AuditLogConfig, to log: AuditLog) {
        log.setRotation(c.rotateBytes.map { AuditLog.Rotation(bytes: $0, retain: c.retain) })
    }

    /// Fail closed on the audit log: while it cannot be written the kernel refuses every guarded
    /// connection it would record (the proxy refuses what it is handed, ``KernelResolver``), and
    /// the operator is told once, on stderr, what to do; it lifts when a write succeeds again.
    static func auditWritabilityChanged(_ problem: String?, kernel: KernelGuard, settings: Settings) {
        let dir = (settings.auditLogPath as NSString).deletingLastPathComponent
        let line: String
        do {
            try kernel.setAuditBlocked(problem != nil)
            if let problem {
                line = "bordergate: \(problem): refusing every guarded connection until the audit log can be written; free space in \(dir) (df -h \(dir)) and it resumes by itself"
            } else {
                line = "bordergate: the audit log \(settings.auditLogPath) can be written again: guarded connections are decided by their policies again"
            }
        } catch {
            line = "bordergate: \(problem ?? "the audit log can be written again"), but the kernel's guard could not be told: \(error)"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
