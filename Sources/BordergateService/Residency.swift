import BordergateAudit
import BordergateKernel
import BordergatePolicy
import BordergateRegions
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Keeps the kernel's compiled policies in step with the configuration, the guarded cgroups and
/// their grants.
///
/// Changes (start, reload, attach, grants) are serialized by `mutation`, which may be held while
/// the kernel is written. Readers (the proxy's verdicts, event explanations, status) take one
/// immutable ``ResidencySnapshot``, published whole after each step of a change, so an event loop
/// never waits for a reload and never sees half of one.
public final class Residency: @unchecked Sendable {
    /// What one policy slot holds.
    typealias Slot = PolicyVariant

    private let mutation = NSLock()
    private let published: NIOLockedValueBox<ResidencySnapshot>
    private let kernel: any PolicySlotStore
    private let logger: Logger
    private let hub: AuditHub
    private let settings: Settings
    /// Where assignments are saved for a restarted daemon (nil for a standalone `exec`).
    private let store: AttachmentStore?

    // Changed only under `mutation`.
    private var current: ResidencyConfig
    private var tableSlot = 0
    private var slots: [Int: Slot] = [:]
    /// Slots freed recently, or recovered from the pins at start: still readable for connections
    /// and events in flight, and not reused until `reuseDelay` has passed.
    private var retired: [Int: (slot: Slot, at: Date)] = [:]
    private var assignments: [UInt64: Assignment] = [:]
    private var installed = (ipv4: 0, ipv6: 0, classes: 0)
    private var grantCounter = 0
    static let reuseDelay: TimeInterval = 15
    /// Grants last at most a week.
    static let longestGrant: TimeInterval = 7 * 86400

    public init(kernel: any PolicySlotStore, settings: Settings, hub: AuditHub, logger: Logger, initial: ResidencyConfig,
                persist: Bool) {
        self.kernel = kernel
        self.settings = settings
        self.hub = hub
        self.logger = logger
        self.current = initial
        self.store = persist ? AttachmentStore(path: settings.attachmentsPath) : nil
        published = NIOLockedValueBox(ResidencySnapshot(config: initial, policies: [:], assignments: [:], kernelCounts: .init()))
    }

    /// What readers see: one value, never changing under them.
    var snapshot: ResidencySnapshot { published.withLockedValue { $0 } }

    public var config: ResidencyConfig { snapshot.config }

    /// Publishes what `mutation` holds, with `pending` (slots written but not yet in force) readable too.
    private func publish(pending: [Int: Slot] = [:]) {
        var policies: [Int: Policy] = [:]
        for (s, r) in retired { policies[s] = r.slot.policy }
        for (s, v) in slots { policies[s] = v.policy }
        for (s, v) in pending { policies[s] = v.policy }
        let next = ResidencySnapshot(config: current, policies: policies, assignments: assignments,
                                     kernelCounts: .init(ipv4Prefixes: installed.ipv4, ipv6Prefixes: installed.ipv6,
                                                         classes: installed.classes, slotsInUse: slots.count))
        published.withLockedValue { $0 = next }
    }

    // MARK: Start and reload

    /// Loads the tables into the kernel (unless the pinned ones already match) and compiles a
    /// policy for every cgroup guarded from the pins, using the policy names saved with them. A
    /// guarded cgroup whose policy is not known is parked: everything but loopback is refused.
    ///
    /// The slots the pins point at are recovered too: the kernel judged by them while no daemon
    /// ran, and their events are read after this.
    public func start(pinned: [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)], name: (UInt64) -> String) throws {
        try mutation.withLock {
            let saved = store?.read() ?? [:]
            var parked: [String] = []
            var fresh: [UInt64: Assignment] = [:]
            let now = Date()
            for (id, slots) in pinned {
                var a = saved[id] ?? Assignment(cgroup: name(id), policy: PolicyVariant.parkedName)
                a.grants = [] // a restarted daemon drops grants; the kernel ends them on time anyway
                if let known = saved[id], let recovered = Self.recoveredPolicy(known.policy, in: current.config) {
                    // A grant variant is named by its base policy: the grant's rule is not kept.
                    let slot = Slot(key: "recovered", policy: recovered)
                    retired[slots.policySlot] = (slot, now)
                    retired[slots.baseSlot] = (slot, now)
                }
                if current.config.policies[a.policy] == nil {
                    parked.append("\(a.cgroup) (policy \(a.policy))")
                    a.policy = PolicyVariant.parkedName
                }
                fresh[id] = a
            }
            assignments = fresh
            publish()
            try install(current)
            save()
            for p in parked {
                let message = "guarded cgroup \(p) has no policy this daemon knows; refusing its connections (all but loopback) until it is attached again with a policy"
                logger.error("\(message)")
                hub.publish(AuditEvent(type: .policy, verdict: .error, policy: PolicyVariant.parkedName, message: message))
            }
        }
    }

    /// The policy a previous daemon compiled for `name`, as far as this one knows it.
    static func recoveredPolicy(_ name: String, in config: BordergateConfig) -> Policy? {
        name == PolicyVariant.parkedName ? PolicyVariant.parkedPolicy : config.policies[name]
    }

    /// Re-reads config and tables. On any error the configuration in force stays, and the error
    /// is both thrown and recorded.
    @discardableResult
    public func reload(trigger: String) throws -> String {
        let fresh: ResidencyConfig
        do {
            fresh = try ResidencyConfig.load(settings: settings)
            try mutation.withLock {
                try Self.checkReload(from: current, to: fresh, assignments: assignments)
                try install(fresh)
            }
        } catch {
            let message = "reload (\(trigger)) failed; keeping the configuration in force: \(error)"
            hub.publish(AuditEvent(type: .policy, verdict: .error, reason: message, message: message))
            logger.error("\(message)")
            throw ReloadError(trigger: trigger, cause: error)
        }
        let summary = "reloaded \(fresh.config.path) (\(trigger)): \(fresh.config.policyOrder.count) policies; tables: \(fresh.tableNotes.joined(separator: "; "))"
        hub.publish(AuditEvent(type: .policy, message: summary))
        return summary
    }

    /// What a reload must not take away: the file itself, a policy a cgroup is guarded with, what
    /// a live grant allows.
    static func checkReload(from before: ResidencyConfig, to fresh: ResidencyConfig,
                            assignments: [UInt64: Assignment]) throws(ResidencyError) {
        if before.config.path != BordergateConfig.builtInPath && fresh.config.path == BordergateConfig.builtInPath {
            throw .configGone(path: before.config.path)
        }
        for a in assignments.values.sorted(by: { $0.cgroup < $1.cgroup }) {
            if a.policy != PolicyVariant.parkedName && fresh.config.policies[a.policy] == nil {
                throw .policyInUse(path: fresh.config.path, policy: a.policy, cgroup: a.cgroup)
            }
            for g in a.grants {
                do throws(GrantTargetError) {
                    _ = try Grant.target(g.allow, catalog: fresh.database.catalog)
                } catch {
                    throw .grantTargetGone(path: fresh.config.path, grant: g.id, allow: g.allow, cgroup: a.cgroup, cause: error)
                }
            }
        }
    }

    /// Puts a configuration into the kernel. Every policy of the config, the parked policy and
    /// every policy with grants in force is compiled over the region classes, partitioned into
    /// kernel classes (``ClassPartition``). The tries go into a free pair when they changed, the
    /// compiled rows into free slots; then every guarded cgroup moves over in one map update each,
    /// and the old slots and tries are freed. Called with `mutation` held.
    private func install(_ cfg: ResidencyConfig) throws {
        // What the kernel uses right now, read from the kernel itself (an earlier install may have
        // stopped half way): every slot a cgroup points at or falls back to, and its trie pairs.
        let inKernel = kernel.guardedSlots()
        let reservedPolicySlots = Set(inKernel.values.flatMap { [$0.policySlot, $0.baseSlot] }).union(slots.keys)
        let tableSlotsInUse = Set(inKernel.values.map(\.tableSlot))
        let variants: [PolicyVariant]
        do throws(GrantTargetError) {
            variants = try PolicyVariant.all(config: cfg.config, assignments: assignments.values.map { ($0.policy, $0.grants) },
                                             catalog: cfg.database.catalog)
        } catch {
            throw ResidencyError.grantTarget(error)
        }
        let regionClasses = cfg.database.regionClasses
        let partition = ClassPartition(variants: variants, classes: regionClasses, catalog: cfg.database.catalog)
        guard partition.kernelClassCount <= kernel.regionClassLimit else {
            throw ResidencyError.tooManyClasses(count: partition.kernelClassCount, limit: kernel.regionClassLimit)
        }
        let image = cfg.database.kernelImage(classMap: partition.kernelClassOf,
                                             classNames: partition.representatives.map { regionClasses[$0] })

        // Slots: never one a cgroup may still point at, nor one freed moments ago (a connection
        // waiting in the proxy still names it).
        let now = Date()
        var free = Self.freeSlots(count: kernel.policySlotCount, reserved: reservedPolicySlots,
                                  retired: retired.mapValues(\.at), now: now)
        guard free.count >= variants.count else {
            throw ResidencyError.tooFewSlots(needed: variants.count, free: free.count)
        }

        let fingerprints = kernel.tableFingerprints()
        var target: Int
        if let same = fingerprints.firstIndex(of: image.fingerprint) {
            target = same
        } else {
            target = tableSlotsInUse.contains(0) ? 1 : 0
            if tableSlotsInUse.count == 2 {
                // A reload was cut short and cgroups read both pairs: park them all on the pair
                // about to stay, refusing everything meanwhile, so none reads a pair being rebuilt.
                target = 1
                guard free.count > variants.count else { throw ResidencyError.noSlotToPark }
                let slot = free.removeLast()
                let deny = Self.kernelRow(PolicyVariant.parkedPolicy.failClosedRow)
                try kernel.writePolicy(slot: slot, rows: [deny], fallback: deny)
                for id in assignments.keys {
                    try kernel.setCgroupPolicy(cgroupID: id, policySlot: UInt32(slot), tableSlot: 0, baseSlot: nil, grantEnds: nil)
                }
            }
            let started = Date()
            try kernel.loadRegions(slot: target, fingerprint: image.fingerprint, ipv4: image.ipv4, ipv6: image.ipv6)
            logger.info("kernel region tries: \(image.ipv4.count) IPv4 and \(image.ipv6.count) IPv6 prefixes, \(partition.kernelClassCount) classes, loaded in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        }

        var newSlots: [Int: Slot] = [:]
        for (v, variant) in variants.enumerated() {
            let slot = free.removeFirst()
            // Readers must never take a reused slot for what it held before.
            retired[slot] = nil
            try kernel.writePolicy(slot: slot, rows: partition.rows[v].map(Self.kernelRow),
                                   fallback: Self.kernelRow(variant.policy.failClosedRow))
            newSlots[slot] = variant
        }
        // Cgroups may use the new slots from their first update on.
        publish(pending: newSlots)
        let slotOfKey = Dictionary(uniqueKeysWithValues: newSlots.map { ($0.value.key, $0.key) })
        let parkedSlot = slotOfKey[PolicyVariant.key(policy: PolicyVariant.parkedName, grants: [])]!
        do {
            for (id, a) in assignments {
                let base = slotOfKey[PolicyVariant.key(policy: a.policy, grants: [])] ?? parkedSlot
                let slot = slotOfKey[PolicyVariant.key(policy: a.policy, grants: a.grants)] ?? base
                try kernel.setCgroupPolicy(cgroupID: id, policySlot: UInt32(slot), tableSlot: UInt32(target),
                                           baseSlot: UInt32(base), grantEnds: a.grants.map(\.endsBootNanos).min())
            }
        } catch {
            // Some cgroups may point at the new slots: keep them readable, and reserved (the
            // kernel's own table says which are in use, next time).
            for (s, v) in newSlots { retired[s] = (v, now) }
            publish()
            throw error
        }
        for (s, old) in slots { retired[s] = (old, now) }
        for s in newSlots.keys { retired[s] = nil }
        slots = newSlots
        tableSlot = target
        current = cfg
        installed = (image.ipv4.count, image.ipv6.count, partition.kernelClassCount)
        publish()
        if kernel.tableFingerprints()[1 - target] != 0 || tableSlotsInUse.contains(1 - target) {
            kernel.clearRegions(slot: 1 - target)
        }
    }

    /// The slots an install may write, lowest first: none a cgroup may point at (`reserved`),
    /// none freed less than ``reuseDelay`` ago.
    static func freeSlots(count: Int, reserved: Set<Int>, retired: [Int: Date], now: Date) -> [Int] {
        (0..<count).filter { s in
            !reserved.contains(s) && retired[s].map { now.timeIntervalSince($0) >= reuseDelay } ?? true
        }
    }

    /// Recompiles everything for the configuration in force (grants changed). `mutation` held.
    private func reinstall() throws {
        try install(current)
    }

    static func kernelRow(_ r: CompiledRow) -> KernelGuard.PolicyRow {
        func v(_ x: CompiledRow.Verdict) -> KernelVerdict {
            switch x {
            case .redirect: .redirect
            case .pass: .pass
            case .deny: .deny
            }
        }
        return KernelGuard.PolicyRow(tcp: v(r.tcp), udp: v(r.udp), tcpAudited: r.tcpAudited, udpAudited: r.udpAudited,
                                     quiet: r.quiet, rule: UInt32(r.rule))
    }

    // MARK: Cgroups

    /// Guards a cgroup with the named policy (the default when nil). `apply` writes the kernel
    /// (entry and links) and runs while no reload or grant can move slots underneath it; if it
    /// fails, the cgroup keeps what it had.
    public func attach(cgroupID: UInt64, cgroup: String, policy name: String?,
                       apply: (_ policySlot: UInt32, _ tableSlot: UInt32) throws -> Void) throws -> String {
        try mutation.withLock {
            let policyName = name ?? current.config.defaultPolicy
            guard current.config.policies[policyName] != nil else {
                throw ResidencyError.unknownPolicy(name: policyName, path: current.config.path, defined: current.config.policyOrder)
            }
            let key = PolicyVariant.key(policy: policyName, grants: [])
            guard let slot = slots.first(where: { $0.value.key == key })?.key else {
                throw ResidencyError.notCompiled(policy: policyName)
            }
            try apply(UInt32(slot), UInt32(tableSlot))
            let previous = assignments[cgroupID]
            assignments[cgroupID] = Assignment(cgroup: cgroup, policy: policyName)
            publish()
            if let previous, !previous.grants.isEmpty { try? reinstall() } // its grant variant goes
            save()
            return policyName
        }
    }

    /// Removes a cgroup's guard: `apply` deletes the kernel's entry and links while no reload or
    /// grant can write the entry back; then its policy and grants are forgotten.
    public func detach(cgroupID: UInt64, apply: () -> Bool) -> Bool {
        mutation.withLock {
            let found = apply()
            if let gone = assignments.removeValue(forKey: cgroupID) {
                publish()
                if !gone.grants.isEmpty { try? reinstall() }
                save()
            }
            return found
        }
    }

    public func policyName(cgroupID: UInt64) -> String? {
        snapshot.assignments[cgroupID]?.policy
    }

    public func grants(cgroupID: UInt64) -> [Grant] {
        snapshot.assignments[cgroupID]?.grants ?? []
    }

    // MARK: Grants

    /// Adds a just-in-time exception to a guarded cgroup. The kernel ends it on time by itself.
    public func grant(cgroupID: UInt64, allow: String, duration: TimeInterval, reason: String, by: String?) throws -> Grant {
        guard duration > 0, duration <= Self.longestGrant else {
            throw ResidencyError.grantDuration(seconds: duration, maximum: Self.longestGrant)
        }
        let (g, a): (Grant, Assignment) = try mutation.withLock {
            guard var a = assignments[cgroupID], a.policy != PolicyVariant.parkedName else {
                throw ResidencyError.notGuarded(cgroupID: cgroupID)
            }
            do throws(GrantTargetError) {
                _ = try Grant.target(allow, catalog: current.database.catalog)
            } catch {
                throw ResidencyError.grantTarget(error)
            }
            grantCounter += 1
            let g = Grant(id: "g\(grantCounter)-\(String(UInt32.random(in: 0...UInt32.max) % 0xffff, radix: 16))",
                          allow: allow, reason: reason, expires: Date().timeIntervalSince1970 + duration, grantedBy: by,
                          endsBootNanos: KernelGuard.bootClockNanos() + UInt64(duration * 1e9))
            let before = a
            a.grants.append(g)
            assignments[cgroupID] = a
            do {
                try reinstall()
            } catch {
                assignments[cgroupID] = before
                publish()
                throw error
            }
            return (g, a)
        }
        hub.publish(AuditEvent(type: .policy, verdict: .grant, reason: reason, policy: a.policy,
                               message: "grant \(g.id) on \(a.cgroup): allow \(allow) until \(AuditTime.format(Date(timeIntervalSince1970: g.expires)))\(by.map { " (by \($0))" } ?? ""): \(reason)"))
        return g
    }

    /// Ends grants whose time is up (the kernel has already stopped applying them). Every second.
    public func expireGrants(bootNanos: UInt64 = KernelGuard.bootClockNanos()) {
        var ended: [(Assignment, Grant)] = []
        mutation.withLock {
            let before = assignments
            for (id, a) in before {
                let over = a.grants.filter { $0.endsBootNanos <= bootNanos }
                guard !over.isEmpty else { continue }
                assignments[id]?.grants.removeAll { $0.endsBootNanos <= bootNanos }
                ended += over.map { (a, $0) }
            }
            guard !ended.isEmpty else { return }
            do {
                try reinstall()
            } catch {
                // The kernel stopped applying the grant at its time regardless; this only keeps
                // the other grants of the cgroup from coming back. Retried next second.
                assignments = before
                publish()
                ended = []
                logger.error("cannot recompile after grants ended: \(error); retrying in a second")
            }
        }
        for (a, g) in ended {
            hub.publish(AuditEvent(type: .policy, verdict: .grantExpired, reason: g.reason, policy: a.policy,
                                   message: "grant \(g.id) on \(a.cgroup) expired: allow \(g.allow) is no longer in force"))
        }
    }

    // MARK: Explaining verdicts (each reads one snapshot)

    /// The policy compiled into a slot (also one freed recently), for events.
    public func policy(slot: UInt32) -> Policy? { snapshot.policies[Int(slot)] }

    public typealias Explanation = ResidencySnapshot.Explanation

    /// ``explain(ip:port:slot:udp:host:process:verdict:)`` for a kernel verdict (no hostname, no
    /// process), remembered.
    public func explainKernelVerdict(ip: String, port: Int, slot: UInt32, udp: Bool, verdict: String) -> Explanation {
        snapshot.explainKernelVerdict(ip: ip, port: port, slot: slot, udp: udp, verdict: verdict)
    }

    /// Region, policy, rule and reason of a verdict, in words.
    public func explain(ip: String, port: Int, slot: UInt32, udp: Bool, host: DestinationFacts.Host,
                        process: ProcessFacts, verdict: String) -> Explanation {
        snapshot.explain(ip: ip, port: port, slot: slot, udp: udp, host: host, process: process, verdict: verdict)
    }

    /// A redirected connection before any byte (``ResidencySnapshot/proxyUpfront(ip:port:slot:process:)``).
    public func proxyUpfront(ip: String, port: Int, slot: UInt32, process: ProcessFacts) -> (Explanation, needsVerdict: Bool) {
        snapshot.proxyUpfront(ip: ip, port: port, slot: slot, process: process)
    }

    /// The verdict once the proxy has read what it could of the hostname.
    public func proxyDecision(ip: String, port: Int, slot: UInt32, host: DestinationFacts.Host,
                              process: ProcessFacts) -> ResidencySnapshot.Decision {
        snapshot.proxyDecision(ip: ip, port: port, slot: slot, host: host, process: process)
    }

    /// The kernel's copy of the tables: prefixes and memory, for `status`.
    public func kernelTableSummary() -> [String: UInt64] {
        var out = kernel.residencyMemory()
        let counts = snapshot.kernelCounts
        out["ipv4_prefixes"] = UInt64(counts.ipv4Prefixes)
        out["ipv6_prefixes"] = UInt64(counts.ipv6Prefixes)
        out["kernel_classes"] = UInt64(counts.classes)
        out["policy_slots_in_use"] = UInt64(counts.slotsInUse)
        return out
    }

    // MARK: Persistence

    /// Which policy each guarded cgroup has, for a restarted daemon. `mutation` held.
    private func save() {
        guard let store else { return }
        do {
            try store.save(assignments)
        } catch {
            logger.error("\(error)")
        }
    }
}

/// A reload that failed; the configuration in force stayed.
public struct ReloadError: Error, Sendable, CustomStringConvertible {
    public var trigger: String
    public var cause: any Error

    public var description: String { "reload (\(trigger)) failed; keeping the configuration in force: \(cause)" }
}
