import BordergateAudit
import BordergateKernel
import BordergatePolicy
import BordergateRecording
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import UnixSignals

/// `bordergate daemon`: the long-running interceptor with pinned state and a control socket.
///
/// Its parts run as services of one `ServiceGroup`: the kernel event pump, the proxy, grant
/// expiry, the control server and SIGHUP's reload. SIGTERM, SIGINT and SIGQUIT (through the
/// library's signal sequence) stop it gracefully:
/// the group shuts the services down in reverse order, so the control socket goes first, the
/// kernel is told no proxy listens (guards stay pinned: connects are refused, fail closed), the
/// proxy stops, and the pump publishes what the kernel reported until then.
public enum Daemon {
    public static func run(settings: Settings, logger: Logger) async throws {
        let cgroups = try Preflight.check(for: "bordergate daemon")
        let client = ControlClient(path: settings.controlSocket)
        if client.isDaemonRunning {
            throw DaemonError.alreadyRunning(controlSocket: settings.controlSocket)
        }
        let hub = AuditHub(log: try AuditLog(path: settings.auditLogPath))
        let interceptor = try Interceptor(settings: settings, mode: .pinned(root: settings.pinRoot),
                                          cgroups: cgroups, hub: hub, logger: logger)
        let resumed = interceptor.kernel.guardedCgroups().count
        try await interceptor.prepare()
        interceptor.applyConfiguredCgroups()
        // Trapped before any service runs, so a SIGHUP right after start is a reload, not a death.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        // SIGTERM, SIGINT and SIGQUIT stop the group gracefully; trapped here rather than by the
        // group so that the record says which one came.
        let stops = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sigquit)
        let stoppedBy = NIOLockedValueBox<String?>(nil)
        let control = ControlServer(path: settings.controlSocket, interceptor: interceptor, logger: logger)
        let announce: @Sendable () -> Void = {
            hub.publish(AuditEvent(type: .daemon, message: "daemon started (pid \(getpid()), version \(bordergateVersion)); proxy on \(interceptor.proxyAddresses.joined(separator: ", ")); resumed \(resumed) guarded cgroup(s)"))
            let config = interceptor.residency.config
            FileHandle.standardError.write(Data("""
                bordergate: daemon running (pid \(getpid()))
                  proxy           \(interceptor.proxyAddresses.joined(separator: ", "))
                  control socket  \(settings.controlSocket)
                  audit log       \(settings.auditLogPath)
                  recordings      \(interceptor.sessionStore?.path ?? "off (see the error above)")
                  pins            \(settings.pinRoot)
                  metrics         \(interceptor.residency.config.config.metrics.map { "http://\($0.listen)/metrics" } ?? "off (metrics: {listen: 127.0.0.1:9380} in the config)")
                  config          \(config.config.path) (default policy \(config.config.defaultPolicy))
                  tables          \(config.tableNotes.joined(separator: "\n                              "))
                  guarding        \(resumed) cgroup(s) resumed from pins
                watch with: bordergate events -f\n
                """.utf8))
            SystemdUnit.notify("READY=1\nSTATUS=guarding \(resumed) cgroup(s) resumed from pins; proxy on \(interceptor.proxyAddresses.joined(separator: ", "))")
        }
        // Shut down in reverse: reload, control, metrics, retention, refusal sweep, grants, proxy,
        // export, pump.
        let export = FleetExportService(config: interceptor.residency.config.config, settings: settings, logger: logger)
        var services: [any Service] = [
            KernelEventPumpService(interceptor: interceptor),
            export,
            ProxyService(interceptor: interceptor),
            GrantExpiryService(interceptor: interceptor),
            RefusalSweepService(interceptor: interceptor),
            RecordingRetentionService(interceptor: interceptor),
            AuditRetentionService(hub: hub, logger: logger),
        ]
        // metrics: read at start; a reload does not move the listener (restart for that)
        if let m = interceptor.residency.config.config.metrics {
            services.append(MetricsService(server: MetricsServer(config: m, metrics: DaemonMetrics(interceptor: interceptor, exporter: export.exporter)),
                                           hub: hub, logger: logger))
        }
        services += [
            ControlService(control: control, hub: hub, logger: logger, stoppedBy: stoppedBy, onListening: announce),
            ReloadService(interceptor: interceptor, hangups: hangups),
        ] as [any Service]
        let group = ServiceGroup(services: services, logger: logger)
        let stopOnSignal = Task {
            for await s in stops {
                stoppedBy.withLockedValue { $0 = "\(s)" }
                await group.triggerGracefulShutdown()
                break
            }
        }
        defer {
            stopOnSignal.cancel()
            hub.shutdown()
        }
        do {
            try await group.run()
        } catch {
            await interceptor.finish()
            throw error
        }
        // A stop with nothing guarded leaves nothing behind: the pins (maps, the system-wide
        // process-table tracepoints) would serve no guard. With a guard they stay (fail closed).
        let idle = interceptor.kernel.guardedCgroups().isEmpty
        await interceptor.finish()
        if idle {
            KernelGuard.detachAllPinned(root: settings.pinRoot)
            logger.info("no cgroup is guarded: removed the pins under \(settings.pinRoot)")
            hub.publish(AuditEvent(type: .daemon, message: "no cgroup is guarded: removed the pins under \(settings.pinRoot)"))
        }
    }
}

/// Why the daemon did not start.
public enum DaemonError: Error, Sendable, CustomStringConvertible {
    case alreadyRunning(controlSocket: String)

    public var description: String {
        switch self {
        case .alreadyRunning(let socket):
            "a Bordergate daemon is already running on \(socket); stop it first, or give this one its own control socket and pin root"
        }
    }
}

/// Publishes kernel events; on shutdown (after the proxy stopped) it drains the ring and ends.
struct KernelEventPumpService: Service {
    let interceptor: Interceptor

    func run() async {
        await withTaskCancellationOrGracefulShutdownHandler {
            await interceptor.runKernelEventPump()
        } onCancelOrGracefulShutdown: {
            interceptor.stopKernelEvents()
        }
    }
}

/// The proxy, started by ``Interceptor/prepare()``; on shutdown the kernel is told no proxy
/// listens (guarded connects are refused from then on) and the proxy stops.
struct ProxyService: Service {
    let interceptor: Interceptor

    func run() async {
        try? await gracefulShutdown() // or cancellation: stopping fails closed all the same
        let drain = interceptor.residency.config.config.proxy.drainSeconds
        await interceptor.stopProxy(failClosed: true, drain: .milliseconds(Int(drain * 1000)))
    }
}

/// The recording store's retention: once at startup, then hourly, off the concurrency pool
/// (deleting and vacuuming may take a while on a large store).
struct RecordingRetentionService: Service {
    let interceptor: Interceptor
    static let interval: Duration = .seconds(3600)

    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await interceptor.applyRecordingRetentionInBackground()
                try? await Task.sleep(for: Self.interval)
            }
        }
    }
}

/// The audit log's retention between rotations, hourly (rotation applies it too).
struct AuditRetentionService: Service {
    let hub: AuditHub
    let logger: Logger

    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(3600))
                guard !Task.isCancelled else { break }
                do {
                    let removed = try hub.log.applyRetention()
                    if !removed.isEmpty { logger.info("audit log retention removed \(removed.joined(separator: ", "))") }
                } catch {
                    logger.error("audit log retention: \(error); old files stay until it works")
                }
            }
        }
    }
}

/// Ends grants on time, every second.
struct GrantExpiryService: Service {
    let interceptor: Interceptor

    func run() async {
        await cancelWhenGracefulShutdown {
            await interceptor.runGrantExpiry()
        }
    }
}

/// Reports the kernel's refusal counts and ring-buffer drops, every second.
struct RefusalSweepService: Service {
    let interceptor: Interceptor

    func run() async {
        await cancelWhenGracefulShutdown {
            await interceptor.runRefusalSweep()
        }
    }
}

/// The control socket. It says the daemon is up once it listens, and that it is stopping before
/// it closes.
struct ControlService: Service {
    let control: ControlServer
    let hub: AuditHub
    let logger: Logger
    let stoppedBy: NIOLockedValueBox<String?>
    let onListening: @Sendable () -> Void

    func run() async throws {
        try await control.start()
        onListening()
        try? await gracefulShutdown()
        let on = stoppedBy.withLockedValue { $0 }.map { " on \($0)" } ?? ""
        logger.info("stopping\(on)")
        SystemdUnit.notify("STOPPING=1")
        hub.publish(AuditEvent(type: .daemon, message: "daemon stopping\(on); guards stay in place and refuse connections until a daemon returns"))
        await control.stop()
    }
}

/// SIGHUP: re-read config and tables (a failed reload keeps the configuration in force and is
/// recorded by it). The reload runs off the concurrency pool: it may write the kernel for seconds.
struct ReloadService: Service {
    let interceptor: Interceptor
    let hangups: UnixSignalsSequence

    func run() async {
        for await _ in hangups.cancelOnGracefulShutdown() {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    _ = try? interceptor.reload(trigger: "SIGHUP")
                    done.resume()
                }
            }
        }
    }
}
