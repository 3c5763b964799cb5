import BordergateCertificates
import BordergateAudit
import CBordergateSys
import BordergateKernel
import BordergatePolicy
import BordergateInspection
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The running interceptor: kernel programs, the proxy, and the audit pipeline between them.
/// The daemon runs one with pinned state; a standalone `exec` runs an ephemeral one for the life
/// of its command.
public final class Interceptor: @unchecked Sendable {
    public let settings: Settings
    public let kernel: KernelGuard
    public let cgroups: CgroupV2
    public let hub: AuditHub
    public let proxy: TransparentProxy
    public let residency: Residency
    /// Where the protocol handlers record sessions: the store in the state directory, or (when it
    /// cannot be opened) a recorder that keeps nothing, the daemon running on with an error logged.
    public let recorder: any SessionRecorder
    /// Statements `review` guardrails hold, answered over the control socket; nil for a standalone
    /// `exec`, which has no control socket (they are refused at once there).
    public let approvals: SQLApprovals?
    /// The store behind ``recorder``; nil when recording is off.
    public let sessionStore: SessionStore?
    public private(set) var proxyAddresses: [String] = []
    public let startedAt = Date()
    let describer: ProcessDescriber
    private let group: MultiThreadedEventLoopGroup
    let logger: Logger
    private(set) var reader: KernelEventReader?
    private var pumpTask: Task<Void, Never>?
    private var grantTask: Task<Void, Never>?
    private var sweepTask: Task<Void, Never>?
    let refusalReporter: RefusalReporter
    /// Kernel events handled (published to the hub), for ``settleKernelEvents(timeout:)``.
    let handled = NSCondition()
    var handledCount: UInt64 = 0
    private let stopping = NIOLockedValueBox(false)

    /// Reads the config and region tables, loads the kernel side and prepares (but does not start)
    /// the proxy.
    public init(settings: Settings, mode: KernelGuard.Mode, cgroups: CgroupV2, hub: AuditHub, logger: Logger) throws {
        self.settings = settings
        self.cgroups = cgroups
        self.hub = hub
        self.logger = logger
        let residencyConfig = try ResidencyConfig.load(settings: settings)
        Self.raiseOpenFileLimit(logger: logger)
        kernel = try KernelGuard(mode: mode, logger: logger, locate: { cgroups.directory(ofID: $0) })
        residency = Residency(kernel: kernel, settings: settings, hub: hub, logger: logger, initial: residencyConfig,
                              persist: mode != .ephemeral)
        describer = ProcessDescriber(kernel: kernel, cgroups: cgroups)
        refusalReporter = RefusalReporter(baseline: kernel.ringDrops(), sourceRouted: kernel.sourceRoutedDrops())
        (sessionStore, recorder) = Self.openRecording(settings: settings, config: residencyConfig.config.recording,
                                                      owner: mode != .ephemeral, hub: hub, logger: logger)
        approvals = mode == .ephemeral ? nil : SQLApprovals()
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
        let resolver = KernelResolver(kernel: kernel, describer: describer, residency: residency, hub: hub)
        let masking = MaskingRulesProvider(residency: residency, hashKey: try MaskingRulesProvider.hashKey(settings: settings))
        let tls = TLSInterceptionProvider(residency: residency, settings: settings, logger: logger)
        if TLSInterceptionProvider.intercepts(residencyConfig.config) {
            // made now, so `exec` and `ca export` find the CA before the first connection
            _ = try LocalCA.loadOrCreate(tls.files)
        }
        proxy = TransparentProxy(configuration: .init(port: settings.proxyPort, upstreamMark: KernelGuard.proxyMark),
                                 group: group, resolver: resolver, sink: hub,
                                 handlers: Inspection.handlers(httpRules: masking.rules(for:), tls: tls.current,
                                                               postgresRules: masking.postgresRules(for:), approvals: approvals,
                                                               recorder: recorder), logger: logger)
        Self.applyAuditRotation(residencyConfig.config.audit, to: hub.log)
        hub.setWritabilityHandler { [kernel, settings] problem in
            Self.auditWritabilityChanged(problem, kernel: kernel, settings: settings)
        }
    }

    /// Opens the session store. Nothing here stops the interceptor: a store that cannot be opened
    /// turns recording off, said once in the log and in the audit log. The daemon (the `owner`)
    /// also closes the sessions a daemon that died left open; a standalone `exec` may run beside
    /// another one and leaves them.
    static func openRecording(settings: Settings, config: RecordingConfig, owner: Bool, hub: AuditHub,
                              logger: Logger) -> (SessionStore?, any SessionRecorder) {
        do {
            let store = try SessionStore(path: settings.recordingsPath, logger: logger)
            if let aside = store.setAside {
                hub.publish(AuditEvent(type: .daemon, error: "the session store \(settings.recordingsPath) was unreadable; moved it to \(aside) and started a new one"))
            }
            if owner {
                let n = store.closeAbandoned()
                if n > 0 { logger.info("closed \(n) recorded session(s) a stopped daemon left open (ending: incomplete)") }
            }
            let recorder = StoreRecorder(store: store, maxSessionBodyBytes: config.maxSessionBodyBytes,
                                         sink: { [hub] in hub.publish($0) })
            return (store, recorder)
        } catch {
            let text = "recording is off: \(error); fix it and restart (connections are still guarded and audited)"
            logger.error("\(text)")
            hub.publish(AuditEvent(type: .daemon, error: text))
            return (nil, DiscardingRecorder())
        }
    }

    /// Applies the config's `recording:` retention to the store (the config in force: a reload
    /// changes it). Blocks while it deletes and vacuums: the daemon calls it off the event loops.
    public func applyRecordingRetention() {
        guard let store = sessionStore else { return }
        let c = residency.config.config.recording
        do {
            let r = try store.applyRetention(RetentionPolicy(retain: c.retain, maxBytes: c.maxBytes))
            if r.deleted > 0 {
                logger.info("recording retention: deleted \(r.expired) session(s) older than \(Self.durationText(c.retain)) and \(r.evictedForSize) for size; \(r.bytesBefore >> 20) MiB -> \(r.bytesAfter >> 20) MiB")
            }
        } catch {
            logger.error("recording retention failed on \(store.path): \(error); recordings are kept until it works")
        }
    }

    /// Runs ``applyRecordingRetention()`` on a queue of its own.
    func applyRecordingRetentionInBackground() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Self.recordingQueue.async { [self] in
                applyRecordingRetention()
                done.resume()
            }
        }
    }

    static let recordingQueue = DispatchQueue(label: "bg-recording-retention")

    /// A proxied connection holds two descriptors; the default soft limit (often 1024) would cap
    /// the proxy near 500 connections, so take everything the hard limit allows, and say so.
    static func raiseOpenFileLimit(logger: Logger) {
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else {
            logger.warning("cannot read the open-file limit: \(String(cString: strerror(errno)))")
            return
        }
        let before = lim.rlim_cur
        if before < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else {
                logger.warning("cannot raise the open-file limit from \(before) to the hard limit \(lim.rlim_max): \(String(cString: strerror(errno))); up to \(before / 2) proxied connections")
                return
            }
        }
        logger.info("open-file limit \(lim.rlim_cur) (the hard limit; was \(before)): up to \(lim.rlim_cur / 2) proxied connections")
    }

    /// Starts everything and runs the kernel event pump and grant expiry in the background until
    /// ``stop(failClosed:)`` (a standalone `exec`; the daemon runs them as services instead).
    public func start() async throws {
        try await prepare()
        pumpTask = Task.detached { [self] in await runKernelEventPump() }
        grantTask = Task.detached { [self] in await runGrantExpiry() }
        sweepTask = Task.detached { [self] in await runRefusalSweep() }
    }

    /// Starts the proxy, points the kernel at it, and opens the kernel's event ring; the pump and
    /// grant expiry are not running yet.
    public func prepare() async throws {
        try residency.start(pinned: kernel.guardedSlots(), name: { [describer] in describer.cgroupName($0) })
        // left by a daemon that died with connections in its backlog
        for e in kernel.takeUnclaimedOriginals() { reportUnreached(e) }
        proxyAddresses = try await proxy.start()
        try applyProxyLimits()
        try kernel.setProxy(tgid: getpid(), port: UInt16(proxy.port))
        // setProxy starts from a clear audit block; a log that failed already keeps it
        if !hub.isWritable { try kernel.setAuditBlocked(true) }
        reader = try kernel.makeEventReader()
    }

    /// Publishes kernel events until the reader stops (``stopKernelEvents()``), draining what it
    /// read before.
    func runKernelEventPump() async {
        guard let reader else { return }
        for await event in reader.events {
            reader.consumed()
            handleKernelEvent(event)
            countHandled()
        }
        sweepRefusals(final: true) // what the kernel counted up to here
    }

    var isStopping: Bool { stopping.withLockedValue { $0 } }

    /// Ends the event pump once it has published what the ring held.
    func stopKernelEvents() {
        reader?.stop()
    }

    /// Ends grants on time, every second, until cancelled or stopped. Ending one may reload the
    /// kernel's tries (a second or so): that runs on a thread of its own, so it never holds up
    /// the tasks that read kernel events.
    func runGrantExpiry() async {
        while !stopping.withLockedValue({ $0 }) && !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard !stopping.withLockedValue({ $0 }) && !Task.isCancelled else { break }
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Self.grantQueue.async { [residency] in
                    residency.expireGrants()
                    done.resume()
                }
            }
        }
    }

    static let grantQueue = DispatchQueue(label: "bg-grants")

    /// Stops the proxy. With `failClosed`, the kernel is told no proxy is listening first, so
    /// guarded connects are refused with EPERM (and recorded) until a daemon comes back.
    func stopProxy(failClosed: Bool, drain: Duration = .zero) async {
        if failClosed { try? kernel.setProxy(tgid: 0, port: 0) }
        // Nothing new is redirected now; what is relayed may finish, up to `drain`.
        let deadline = ContinuousClock.now + drain
        var waited = false
        while proxy.counters.values.active > 0 && ContinuousClock.now < deadline {
            if !waited {
                logger.info("proxy: letting \(proxy.counters.values.active) relayed connection(s) finish (up to \(drain))")
                waited = true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        if waited, proxy.counters.values.active > 0 {
            logger.notice("proxy: closing \(proxy.counters.values.active) relayed connection(s) still open after \(drain)")
        }
        await proxy.stop()
        // what waited in the listeners' backlog was reset unaccepted
        for e in kernel.takeUnclaimedOriginals() { reportUnreached(e) }
    }

    /// After the proxy and the pump stopped: the event loops and the kernel objects go.
    func finish() async {
        stopping.withLockedValue { $0 = true }
        try? await group.shutdownGracefully()
        sessionStore?.flush() // the last sessions' rows and events
        hub.setWritabilityHandler(nil) // the kernel's maps close now
        kernel.close()
    }

    /// Stops what ``start()`` started, in order: proxy, events, grants, the rest.
    public func stop(failClosed: Bool = true) async {
        await stopProxy(failClosed: failClosed)
        stopKernelEvents()
        await pumpTask?.value
        stopping.withLockedValue { $0 = true }
        grantTask?.cancel()
        sweepTask?.cancel()
        await grantTask?.value
        await sweepTask?.value
        await finish()
    }

    // MARK: Guards

    /// Guards a cgroup (and its descendants) with a policy (the default one when nil).
    public func attach(cgroup name: String, policy: String? = nil) throws -> (directory: String, id: UInt64, policy: String) {
        let dir = cgroups.directory(for: name)
        let id = try cgroups.id(ofDirectory: dir)
        if let mine = CgroupV2.cgroupName(ofProcess: getpid()) {
            let rel = cgroups.relativeName(ofDirectory: dir)
            if mine == rel || mine.hasPrefix(rel == "/" ? "/" : rel + "/") {
                throw ServiceError("refusing to guard \(rel): Bordergate itself runs in \(mine), and the proxy must run outside every guarded cgroup; move the daemon out (e.g. its own systemd unit) or guard a narrower cgroup")
            }
        }
        let rel = cgroups.relativeName(ofDirectory: dir)
        let policy = try residency.attach(cgroupID: id, cgroup: rel, policy: policy) { policySlot, tableSlot in
            try kernel.attach(cgroupDirectory: dir, cgroupID: id, policySlot: policySlot, tableSlot: tableSlot)
        }
        describer.learn(cgroupID: id, name: rel)
        hub.publish(AuditEvent(type: .policy, policy: policy,
                               message: "guard attached to \(rel) with policy \(policy)"))
        return (dir, id, policy)
    }

    /// Removes a cgroup's guard. Returns false if it had none.
    public func detach(cgroup name: String) throws -> Bool {
        let dir = cgroups.directory(for: name)
        let id: UInt64
        if let known = try? cgroups.id(ofDirectory: dir) {
            id = known
        } else if let raw = UInt64(name.split(separator: ":").last ?? "") {
            id = raw // "cgroup-id:N" for a guard whose cgroup is gone
        } else {
            throw ServiceError("cgroup \(name) does not exist (looked for \(dir))")
        }
        let found = residency.detach(cgroupID: id) { kernel.detach(cgroupID: id) }
        if found {
            hub.publish(AuditEvent(type: .policy, message: "guard detached from \(cgroups.relativeName(ofDirectory: dir))"))
        }
        return found
    }

    /// Re-reads config and tables, then applies the config's `cgroups:`; on error nothing changes.
    public func reload(trigger: String) throws -> String {
        let summary = try residency.reload(trigger: trigger)
        try? applyProxyLimits()
        // retention reads the config in force each time; the body cap applies to new sessions
        (recorder as? StoreRecorder)?.maxSessionBodyBytes = residency.config.config.recording.maxSessionBodyBytes
        Self.applyAuditRotation(residency.config.config.audit, to: hub.log)
        applyConfiguredCgroups()
        return summary
    }

    /// Guards the cgroups the config lists, with their policies (those already guarded with
    /// another policy are moved to the listed one).
    public func applyConfiguredCgroups() {
        for (cg, policy) in residency.config.config.cgroups {
            let dir = cgroups.directory(for: cg)
            guard FileManager.default.fileExists(atPath: dir) else {
                hub.publish(AuditEvent(type: .policy, verdict: .error, policy: policy,
                                       message: "the config lists cgroup \(cg), which does not exist (looked for \(dir)); not guarded"))
                continue
            }
            if let id = try? cgroups.id(ofDirectory: dir), residency.policyName(cgroupID: id) == policy { continue }
            do {
                _ = try attach(cgroup: cg, policy: policy)
            } catch {
                hub.publish(AuditEvent(type: .policy, verdict: .error, policy: policy, message: "cannot guard \(cg) as the config asks: \(error)"))
            }
        }
    }

    /// A just-in-time exception on a guarded cgroup.
    public func grant(cgroup name: String, allow: String, seconds: Double, reason: String, user: String?) throws -> Grant {
        let dir = cgroups.directory(for: name)
        let id = try cgroups.id(ofDirectory: dir)
        return try residency.grant(cgroupID: id, allow: allow, duration: seconds, reason: reason, by: user)
    }

    /// Removes the guard of a cgroup known only by id (its directory is gone).
    public func detach(cgroupID id: UInt64) -> Bool {
        residency.detach(cgroupID: id) { kernel.detach(cgroupID: id) }
    }

    public func status() -> DaemonStatus {
        let guards = kernel.guardedCgroups().map { id, _ -> DaemonStatus.Guard in
            let name = describer.cgroupName(id)
            let procs = (try? String(contentsOfFile: cgroups.directory(for: name) + "/cgroup.procs", encoding: .utf8))?
                .split(separator: "\n").count ?? 0
            let grants = residency.grants(cgroupID: id).map {
                "\($0.id): allow \($0.allow) until \(AuditTime.format(Date(timeIntervalSince1970: $0.expires))) (\($0.reason))"
            }
            var g = DaemonStatus.Guard(cgroup: name, cgroupID: id, policy: residency.policyName(cgroupID: id) ?? "?",
                                       processes: procs, grants: grants.isEmpty ? nil : grants)
            g.proxied = kernel.proxiedConnections(cgroupID: id)
            return g
        }.sorted { $0.cgroup < $1.cgroup }
        let pinRoot: String
        if case .pinned(let root) = kernel.mode { pinRoot = root } else { pinRoot = "(not pinned)" }
        let audit = hub.counters
        var status = DaemonStatus(
            pid: getpid(), version: bordergateVersion, startedAt: startedAt, proxy: proxyAddresses, pinRoot: pinRoot,
            stateDirectory: settings.stateDirectory, auditLog: hub.log.path, cgroupRoot: cgroups.mountPoint,
            programs: kernel.programSections,
            guards: guards, kernel: kernel.counters(), proxyCounters: proxy.counters.dictionary,
            audit: ["published": audit.published, "write_failures": audit.writeFailures, "refusals_coalesced": audit.coalesced],
            subscribers: hub.subscriberCount,
            config: residency.config.config.path, policies: residency.config.config.policyOrder,
            defaultPolicy: residency.config.config.defaultPolicy, tables: residency.config.tableNotes,
            kernelTables: residency.kernelTableSummary(), heapInUse: bg_heap_in_use())
        status.recordings = recordingSummary()
        status.auditProblem = hub.outageSummary
        return status
    }

    /// `30d`, `12h`, `90m`, `45s`: as the config writes it.
    static func durationText(_ t: Double) -> String {
        let s = Int(t)
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] where s % size == 0 && s >= size { return "\(s / size)\(unit)" }
        return "\(s)s"
    }

    /// `status`'s line on the session store.
    func recordingSummary() -> String {
        guard let store = sessionStore else { return "off: the store could not be opened (see the daemon's log)" }
        let c = residency.config.config.recording
        let cap = (recorder as? StoreRecorder)?.maxSessionBodyBytes ?? c.maxSessionBodyBytes
        let mib = { (n: UInt64) in String(format: "%.1f MiB", Double(n) / 1048576) }
        return "\(store.path): \(mib(store.fileBytes())); retain \(Self.durationText(c.retain)) or \(mib(c.maxBytes)), \(mib(cap)) of bodies per session"
    }
}
