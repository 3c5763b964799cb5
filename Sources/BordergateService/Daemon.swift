import BordergateAudit
import BordergateKernel
import BordergatePolicy
import Foundation
import Logging

/// `bordergate daemon`: the long-running interceptor with pinned state and a control socket.
public enum Daemon {
    public static func run(settings: Settings, logger: Logger) async throws {
        let cgroups = try Preflight.check(for: "bordergate daemon")
        let client = ControlClient(path: settings.controlSocket)
        if client.isDaemonRunning {
            throw ServiceError("a Bordergate daemon is already running on \(settings.controlSocket); stop it first, or give this one its own --control-socket and --pin-root")
        }
        let hub = AuditHub(log: try AuditLog(path: settings.auditLogPath))
        let interceptor = try Interceptor(settings: settings, mode: .pinned(root: settings.pinRoot),
                                          cgroups: cgroups, hub: hub, logger: logger)
        let resumed = interceptor.kernel.guardedCgroups().count
        try await interceptor.start()
        interceptor.applyConfiguredCgroups()
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        signal(SIGHUP, SIG_IGN)
        hup.setEventHandler { _ = try? interceptor.reload(trigger: "SIGHUP") }
        hup.resume()
        defer { hup.cancel() }
        let control = ControlServer(path: settings.controlSocket, interceptor: interceptor, logger: logger)
        do {
            try await control.start()
        } catch {
            await interceptor.stop()
            throw error
        }
        hub.publish(AuditEvent(type: .daemon, message: "daemon started (pid \(getpid()), version \(bordergateVersion)); proxy on \(interceptor.proxyAddresses.joined(separator: ", ")); resumed \(resumed) guarded cgroup(s)"))
        FileHandle.standardError.write(Data("""
            bordergate: daemon running (pid \(getpid()))
              proxy           \(interceptor.proxyAddresses.joined(separator: ", "))
              control socket  \(settings.controlSocket)
              audit log       \(settings.auditLogPath)
              pins            \(settings.pinRoot)
              config          \(interceptor.residency.config.config.path) (default policy \(interceptor.residency.config.config.defaultPolicy))
              tables          \(interceptor.residency.config.tableNotes.joined(separator: "\n                              "))
              guarding        \(resumed) cgroup(s) resumed from pins
            watch with: bordergate events -f\n
            """.utf8))

        let signal = await waitForTermination()
        logger.info("stopping on \(signal)")
        hub.publish(AuditEvent(type: .daemon, message: "daemon stopping on \(signal); guards stay in place and refuse connections until a daemon returns"))
        await control.stop()
        await interceptor.stop(failClosed: true)
        hub.shutdown()
    }

    /// Waits for SIGTERM, SIGINT or SIGQUIT and returns its name.
    static func waitForTermination() async -> String {
        await withCheckedContinuation { (cont: CheckedContinuation<String, Never>) in
            let once = OnceBox(cont)
            var sources: [DispatchSourceSignal] = []
            for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGQUIT, "SIGQUIT")] {
                signal(sig, SIG_IGN)
                let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                src.setEventHandler { once.resume(name) }
                src.resume()
                sources.append(src)
            }
            once.keep(sources)
        }
    }
}

/// Resumes a continuation once and keeps its signal sources alive until then.
final class OnceBox: @unchecked Sendable {
    private let lock = NSLock()
    private var cont: CheckedContinuation<String, Never>?
    private var sources: [DispatchSourceSignal] = []

    init(_ cont: CheckedContinuation<String, Never>) { self.cont = cont }

    func keep(_ s: [DispatchSourceSignal]) { lock.withLock { sources = s } }

    func resume(_ value: String) {
        let c = lock.withLock { () -> CheckedContinuation<String, Never>? in
            let c = cont
            cont = nil
            return c
        }
        c?.resume(returning: value)
    }
}
