import BordergateAudit
import BordergateFleet
import BordergateKernel
import BordergateProxy
import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// swift-metrics' types (Prometheus has classes of the same names: its handlers).
typealias MetricCounter = CoreMetrics.Counter
typealias MetricGauge = CoreMetrics.Meter

/// What `/metrics` shows (`metrics: {listen: 127.0.0.1:9380}`), every name `bordergate_…`.
///
/// Counts of what happened are taken from the audit events (a subscription to the hub), so the
/// numbers and the evidence agree; what the kernel and the proxy count themselves (ring-buffer
/// drops, bytes, active connections) is read when the page is scraped. The series are
/// swift-metrics types (`Counter`, `Gauge`) whose handlers are swift-prometheus' own, made
/// through its registry so that each family has the HELP line Prometheus' linter asks for.
final class DaemonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let interceptor: Interceptor
    private struct Families: Sendable {
        var connections: [String: MetricCounter] = [:]
        var refusals: [String: MetricCounter] = [:]
        var masked: [String: MetricCounter] = [:]
        /// The last value of each kernel or proxy counter read, for the increments since.
        var sampled: [String: UInt64] = [:]
    }
    private let families = NIOLockedValueBox(Families())
    private let reloadErrors: MetricCounter
    private let eventsMissed: MetricCounter
    private let ringDrops: MetricCounter
    private let socketsRefused: MetricCounter
    private let bytesSent: MetricCounter
    private let bytesReceived: MetricCounter
    private let active: MetricGauge
    private let logLag: MetricGauge
    private let logWritable: MetricGauge
    private let logWriteFailures: MetricCounter
    private let guarded: MetricGauge
    private let exporter: FleetExporter?
    private let exportLag: MetricGauge?
    private let exportConnected: MetricGauge?

    init(interceptor: Interceptor, exporter: FleetExporter? = nil) {
        self.interceptor = interceptor
        self.exporter = exporter
        let registry = self.registry
        func counter(_ name: String, _ help: String) -> MetricCounter {
            MetricCounter(label: name, dimensions: [], handler: registry.makeCounter(descriptor: Self.descriptor(name, help)))
        }
        func gauge(_ name: String, _ help: String, labels: [(String, String)] = []) -> MetricGauge {
            let handler = registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels)
            return MetricGauge(label: name, dimensions: labels, handler: handler)
        }
        reloadErrors = counter("bordergate_reload_errors_total", "Reloads that failed (the configuration in force stayed).")
        eventsMissed = counter("bordergate_metrics_events_missed_total", "Audit events the metrics fell too far behind to count.")
        ringDrops = counter("bordergate_ring_buffer_drops_total", "Kernel events dropped because the ring buffer was full (the verdicts still held).")
        socketsRefused = counter("bordergate_kernel_sockets_refused_total", "Sockets, binds and options the kernel refused before any verdict (raw, packet, proxy port, source routes).")
        bytesSent = counter("bordergate_proxy_sent_bytes_total", "Bytes the proxy relayed from tools to their destinations.")
        bytesReceived = counter("bordergate_proxy_received_bytes_total", "Bytes the proxy relayed from destinations back to tools.")
        active = gauge("bordergate_proxy_active_connections", "Connections the proxy is relaying now.")
        logLag = gauge("bordergate_audit_log_lag_events", "Events published but not yet written to the audit log.")
        logWritable = gauge("bordergate_audit_log_writable", "1 while the audit log can be written; 0 while guarded connections are refused because it cannot.")
        logWriteFailures = counter("bordergate_audit_log_write_failures_total", "Events that could not be written to the audit log.")
        guarded = gauge("bordergate_guarded_cgroups", "Cgroups under a guard.")
        gauge("bordergate_build_info", "The running Bordergate's version.", labels: [("version", bordergateVersion)]).set(1)
        if exporter != nil {
            exportLag = gauge("bordergate_export_lag_events", "Events in the audit log not yet in the fleet's PostgreSQL.")
            exportConnected = gauge("bordergate_export_connected", "1 while the last attempt to ship events to PostgreSQL succeeded.")
        } else {
            exportLag = nil
            exportConnected = nil
        }
    }

    /// The whole name as the metric name: ours are spelled out where they are made.
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Counts one audit event.
    func count(_ e: AuditEvent) {
        switch e.type {
        case .connect:
            let verdict = e.verdict?.rawValue ?? "none"
            let policy = e.policy ?? ""
            series(\.connections, "bordergate_connections_total", "Connections judged, by verdict and policy.",
                   [("verdict", verdict), ("policy", policy)]).increment()
            if e.verdict == .deny {
                series(\.refusals, "bordergate_refusals_total", "Connections refused, by policy.", [("policy", policy)]).increment()
            }
        case .mask:
            for (what, n) in e.masked ?? [:] where n > 0 {
                series(\.masked, "bordergate_masked_values_total", "Values masked, by detector or field rule.",
                       [("detector", what)]).increment(by: n)
            }
        case .policy where e.verdict == .error && (e.reason ?? "").hasPrefix("reload ("):
            reloadErrors.increment()
        default:
            break
        }
    }

    func missed(_ n: Int) { eventsMissed.increment(by: n) }

    /// One labelled series of a family, made on first use.
    private func series(_ family: WritableKeyPath<Families, [String: MetricCounter]>, _ name: String, _ help: String,
                        _ labels: [(String, String)]) -> MetricCounter {
        let key = labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return families.withLockedValue { f in
            if let c = f[keyPath: family][key] { return c }
            let c = MetricCounter(label: name, dimensions: labels, handler: registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels))
            f[keyPath: family][key] = c
            return c
        }
    }

    /// Reads what the kernel, the proxy and the hub count, then renders the page.
    func render() -> [UInt8] {
        let kernel = interceptor.kernel.counters()
        let proxy = interceptor.proxy.counters.values
        let audit = interceptor.hub.counters
        advance(ringDrops, "events_dropped", to: kernel["events_dropped"] ?? 0)
        advance(socketsRefused, "sockets_refused", to: kernel["sockets_refused"] ?? 0)
        advance(bytesSent, "bytes_sent", to: proxy.bytesSent)
        advance(bytesReceived, "bytes_received", to: proxy.bytesReceived)
        advance(logWriteFailures, "write_failures", to: audit.writeFailures)
        active.set(Double(proxy.active))
        logLag.set(Double(interceptor.hub.queuedCount))
        if let exporter, let exportLag, let exportConnected {
            let status = exporter.status
            let logged = Int64(clamping: interceptor.hub.log.lastWrittenSeq)
            exportLag.set(Double(max(0, logged - status.exportedSeq)))
            exportConnected.set(status.connected ? 1 : 0)
        }
        logWritable.set(interceptor.hub.isWritable ? 1 : 0)
        guarded.set(Double(interceptor.kernel.guardedCgroups().count))
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }

    /// Increments `counter` by what a cumulative source gained since it was last read.
    private func advance(_ counter: MetricCounter, _ key: String, to value: UInt64) {
        let delta = families.withLockedValue { f -> UInt64 in
            let before = f.sampled[key] ?? 0
            f.sampled[key] = value
            return value > before ? value - before : 0
        }
        if delta > 0 { counter.increment(by: Int64(clamping: delta)) }
    }
}
