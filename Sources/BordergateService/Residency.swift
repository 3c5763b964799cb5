import BordergateAudit
import BordergateKernel
import BordergatePolicy
import BordergateProxy
import BordergateRegions
import Foundation
import Logging

/// The configuration in force: the parsed file, its region tables, and what the kernel holds of
/// them. Built whole or not at all, so a broken file or table never replaces a good one.
public struct ResidencyConfig: Sendable {
    public let config: BordergateConfig
    public let database: RegionDatabase
    /// One line per table: name, source, prefix counts.
    public let tableNotes: [String]

    /// Reads the config (the built-in policy when there is no file) and every table it names.
    public static func load(settings: Settings) throws -> ResidencyConfig {
        let config: BordergateConfig
        if let path = settings.configPath {
            config = try ConfigParser.load(path: path)
        } else if FileManager.default.fileExists(atPath: Settings.defaultConfigPath) {
            config = try ConfigParser.load(path: Settings.defaultConfigPath)
        } else {
            config = .builtIn
        }
        var tables: [RegionTable] = [SpecialRanges.table]
        if let sources = config.tables {
            for src in sources {
                do {
                    tables += try RegionTableReader.read(path: src.path, format: src.format, name: src.name)
                } catch {
                    throw ServiceError("\(error) (table listed at \(src.origin))")
                }
            }
        } else if FileManager.default.fileExists(atPath: settings.defaultTablesPath) {
            tables += try RegionTableReader.read(path: settings.defaultTablesPath, format: .compiled)
        }
        let database = RegionDatabase(tables: tables, catalog: config.catalog())
        let notes = database.tables.map { "\($0.name) (\($0.source)): \($0.ipv4Count) IPv4 and \($0.ipv6Count) IPv6 prefixes" }
        return ResidencyConfig(config: config, database: database, tableNotes: notes)
    }

    /// Region facts of an address.
    public func facts(ip: String, host: DestinationFacts.Host) -> (DestinationFacts, RegionAnswer?) {
        let answer = IPAddress(ip).flatMap { database.lookup($0) }
        return (DestinationFacts(address: ip, answer: answer, host: host), answer)
    }
}

/// Keeps the kernel's compiled policies in step with the configuration, the guarded cgroups and
/// their grants.
///
/// Changes (start, reload, attach, grants) are serialized by `mutation`, which may be held while
/// the kernel is written; what readers need (the proxy's verdicts, event explanations) is published
/// under `state`, which is only ever held briefly, so an event loop never waits for a reload.
public final class Residency: @unchecked Sendable {
    /// A cgroup's policy and its live grants.
    struct Assignment: Codable {
        var cgroup: String
        var policy: String
        var grants: [Grant] = []
    }

    /// What one policy slot holds.
    struct Slot {
        var key: String
        var policy: Policy
    }

    /// The policy for guarded cgroups whose policy is not known (lost state): it refuses
    /// everything, loopback included (a local forward proxy would lead anywhere), and is always
    /// compiled.
    static let parkedName = "(parked)"
    static var parkedPolicy: Policy {
        var p = Policy(name: parkedName)
        p.unknown = .deny
        p.fallback = .deny
        p.privateNetworks = .deny
        p.loopback = .deny
        return p
    }

    private let mutation = NSLock()
    private let state = NSLock()
    private let kernel: KernelGuard
    private let settings: Settings
    private let logger: Logger
    private let hub: AuditHub
    /// Whether assignments are saved for a restarted daemon (not for a standalone `exec`).
    private let persist: Bool
    // Published under `state`; changed under `mutation` and `state` together.
    private var current: ResidencyConfig
    private var tableSlot = 0
    private var slots: [Int: Slot] = [:]
    /// Slots written by an install that has not published yet: cgroups may already use them.
    private var pending: [Int: Slot] = [:]
    /// Slots freed recently: still readable for connections and events in flight, and not reused
    /// until `reuseDelay` has passed.
    private var retired: [Int: (slot: Slot, at: Date)] = [:]
    private var assignments: [UInt64: Assignment] = [:]
    private var installed = (ipv4: 0, ipv6: 0, classes: 0)
    private var grantCounter = 0
    static let reuseDelay: TimeInterval = 15
    /// Explanations of kernel verdicts by (slot, protocol, verdict, address): a busy runner talks
    /// to the same few destinations, and every verdict event needs one. Cleared on every install.
    private var explained: [KernelVerdictKey: Explanation] = [:]
    private struct KernelVerdictKey: Hashable {
        let slot: UInt32
        let udp: Bool
        let verdict: String
        let ip: String
    }
    private var upfront: [UpfrontKey: (Explanation, Bool)] = [:]
    /// What an upfront explanation depends on (a struct: formatting a string key per connection
    /// cost more than the lookup).
    private struct UpfrontKey: Hashable {
        let slot: UInt32
        let ip: String
        let uid: UInt32?
        let exe: String?
    }
    /// Bumped by every install: an explanation computed before it is not cached after it.
    private var generation = 0
    private let explainedLock = NSLock()

    public init(kernel: KernelGuard, settings: Settings, hub: AuditHub, logger: Logger, initial: ResidencyConfig,
                persist: Bool) {
        self.kernel = kernel
        self.settings = settings
        self.hub = hub
        self.logger = logger
        self.current = initial
        self.persist = persist
    }

    public var config: ResidencyConfig { state.withLock { current } }

    private func publish(_ body: () -> Void) { state.withLock(body) }

    // MARK: Start and reload

    /// Loads the tables into the kernel (unless the pinned ones already match) and compiles a
    /// policy for every cgroup guarded from the pins, using the policy names saved with them. A
    /// guarded cgroup whose policy is not known is parked: everything but loopback is refused.
    public func start(pinned: [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)], name: (UInt64) -> String) throws {
        try mutation.withLock {
            let saved = persist ? Self.readAssignments(path: settings.attachmentsPath) : [:]
            var parked: [String] = []
            var fresh: [UInt64: Assignment] = [:]
            for (id, _) in pinned {
                var a = saved[id] ?? Assignment(cgroup: name(id), policy: Self.parkedName)
                a.grants = [] // a restarted daemon drops grants; the kernel ends them on time anyway
                if current.config.policies[a.policy] == nil {
                    parked.append("\(a.cgroup) (policy \(a.policy))")
                    a.policy = Self.parkedName
                }
                fresh[id] = a
            }
            publish { assignments = fresh }
            try install(current)
            saveAssignments()
            for p in parked {
                let message = "guarded cgroup \(p) has no policy this daemon knows; refusing its connections (all but loopback) until 'bordergate attach CGROUP --policy NAME'"
                logger.error("\(message)")
                hub.publish(AuditEvent(type: .policy, verdict: .error, policy: Self.parkedName, message: message))
            }
        }
    }

    /// Re-reads config and tables. On any error the configuration in force stays, and the error
    /// is both thrown and recorded.
    @discardableResult
    public func reload(trigger: String) throws -> String {
        let fresh: ResidencyConfig
        do {
            fresh = try ResidencyConfig.load(settings: settings)
            try mutation.withLock {
                let before = current
                if before.config.path != BordergateConfig.builtInPath && fresh.config.path == BordergateConfig.builtInPath {
                    throw ServiceError("\(before.config.path) is gone; restore it (the built-in policy would allow everything)")
                }
                for (_, a) in assignments where a.policy != Self.parkedName && fresh.config.policies[a.policy] == nil {
                    throw ServiceError("\(fresh.config.path): policy \(a.policy) is gone, but \(a.cgroup) is guarded with it; define it again or 'bordergate attach \(a.cgroup) --policy NAME' first")
                }
                for (_, a) in assignments {
                    for g in a.grants where (try? Self.grantTarget(g.allow, catalog: fresh.database.catalog)) == nil {
                        throw ServiceError("grant \(g.id) on \(a.cgroup) allows \(g.allow), which \(fresh.config.path) no longer defines; let it expire or re-attach \(a.cgroup)")
                    }
                }
                try install(fresh)
            }
        } catch {
            let message = "reload (\(trigger)) failed; keeping the configuration in force: \(error)"
            hub.publish(AuditEvent(type: .policy, verdict: .error, reason: message, message: message))
            logger.error("\(message)")
            throw ServiceError(message)
        }
        let summary = "reloaded \(fresh.config.path) (\(trigger)): \(fresh.config.policyOrder.count) policies; tables: \(fresh.tableNotes.joined(separator: "; "))"
        hub.publish(AuditEvent(type: .policy, message: summary))
        return summary
    }

    /// Puts a configuration into the kernel. Every policy of the config, the parked policy and
    /// every policy with grants in force is compiled over the region classes; classes that get the
    /// same verdicts under all of them become one kernel class (class 0: the same as "no table
    /// knows it", left out of the tries). The tries go into a free pair when they changed, the
    /// compiled rows into free slots; then every guarded cgroup moves over in one map update each,
    /// and the old slots and tries are freed. Called with `mutation` held.
    private func install(_ cfg: ResidencyConfig) throws {
        let assignments = state.withLock { self.assignments }
        // What the kernel uses right now, read from the kernel itself (an earlier install may have
        // stopped half way): every slot a cgroup points at or falls back to, and its trie pairs.
        let inKernel = kernel.guardedSlots()
        let reservedPolicySlots = Set(inKernel.values.flatMap { [$0.policySlot, $0.baseSlot] })
            .union(state.withLock { Set(slots.keys) })
        let tableSlotsInUse = Set(inKernel.values.map(\.tableSlot))
        explainedLock.withLock { generation += 1 }
        var variants: [(key: String, policy: Policy)] = [(Self.slotKey(Self.parkedName, []), Self.parkedPolicy)]
        var seen: Set = [variants[0].key]
        for name in cfg.config.policyOrder {
            let key = Self.slotKey(name, [])
            if seen.insert(key).inserted { variants.append((key, cfg.config.policies[name]!)) }
        }
        for a in assignments.values where !a.grants.isEmpty {
            let key = Self.slotKey(a.policy, a.grants)
            if seen.insert(key).inserted, let base = cfg.config.policies[a.policy] {
                variants.append((key, try Self.effectivePolicy(base, grants: a.grants, catalog: cfg.database.catalog)))
            }
        }
        let regionClasses = cfg.database.regionClasses
        let compiled = variants.map { $0.policy.compile(classes: regionClasses, catalog: cfg.database.catalog) }

        // The partition: a class's verdicts under every variant (the rule of a row is only for
        // reading; events name rules from user space).
        func signature(_ c: Int) -> [CompiledRow] {
            compiled.map { rows in
                var r = rows[c]
                r.rule = 0
                return r
            }
        }
        var kernelClassOf = [UInt32](repeating: 0, count: regionClasses.count)
        var representatives = [0]
        var bySignature: [[CompiledRow]: UInt32] = [signature(0): 0]
        for c in 1..<max(regionClasses.count, 1) {
            let sig = signature(c)
            if let k = bySignature[sig] {
                kernelClassOf[c] = k
            } else {
                let k = UInt32(representatives.count)
                bySignature[sig] = k
                representatives.append(c)
                kernelClassOf[c] = k
            }
        }
        guard representatives.count <= KernelGuard.maxRegionClasses else {
            throw ServiceError("the policies tell \(representatives.count) kinds of destination apart; the kernel holds at most \(KernelGuard.maxRegionClasses); simplify the policies or load fewer tables")
        }
        let image = cfg.database.kernelImage(classMap: kernelClassOf, classNames: representatives.map { regionClasses[$0] })

        // Slots: never one a cgroup may still point at, nor one freed moments ago (a connection
        // waiting in the proxy still names it).
        let now = Date()
        let coolingDown = state.withLock { Set(retired.filter { now.timeIntervalSince($0.value.at) < Self.reuseDelay }.keys) }
        var free = (0..<KernelGuard.maxPolicySlots).filter { !reservedPolicySlots.contains($0) && !coolingDown.contains($0) }
        guard free.count >= variants.count else {
            throw ServiceError("\(variants.count) policies and grant variants need kernel slots and only \(free.count) are free; end some grants or define fewer policies, then try again")
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
                guard free.count > variants.count else {
                    throw ServiceError("no free kernel slot to park guarded cgroups while the region tables are rebuilt; end some grants and try again")
                }
                let slot = free.removeLast()
                let deny = Self.kernelRow(Self.parkedPolicy.failClosedRow)
                try kernel.writePolicy(slot: slot, rows: [deny], fallback: deny)
                for id in assignments.keys { try kernel.setCgroupPolicy(cgroupID: id, policySlot: UInt32(slot), tableSlot: 0) }
            }
            let started = Date()
            try kernel.loadRegions(slot: target, fingerprint: image.fingerprint, ipv4: image.ipv4, ipv6: image.ipv6)
            logger.info("kernel region tries: \(image.ipv4.count) IPv4 and \(image.ipv6.count) IPv6 prefixes, \(representatives.count) classes, loaded in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        }

        var newSlots: [Int: Slot] = [:]
        for (v, variant) in variants.enumerated() {
            let slot = free.removeFirst()
            // Readers must never take a reused slot for what it held before.
            publish { retired[slot] = nil }
            let rows = representatives.map { Self.kernelRow(compiled[v][$0]) }
            try kernel.writePolicy(slot: slot, rows: rows, fallback: Self.kernelRow(variant.policy.failClosedRow))
            newSlots[slot] = Slot(key: variant.key, policy: variant.policy)
        }
        publish { pending = newSlots }
        defer { publish { pending = [:] } }
        let slotOfKey = Dictionary(uniqueKeysWithValues: newSlots.map { ($0.value.key, $0.key) })
        for (id, a) in assignments {
            let base = slotOfKey[Self.slotKey(a.policy, [])] ?? slotOfKey[Self.slotKey(Self.parkedName, [])]!
            let slot = slotOfKey[Self.slotKey(a.policy, a.grants)] ?? base
            let ends = a.grants.map(\.endsBootNanos).min()
            try kernel.setCgroupPolicy(cgroupID: id, policySlot: UInt32(slot), tableSlot: UInt32(target),
                                       baseSlot: UInt32(base), grantEnds: ends)
        }
        publish {
            for (s, old) in slots { retired[s] = (old, now) }
            for s in newSlots.keys { retired[s] = nil }
            slots = newSlots
            tableSlot = target
            current = cfg
            installed = (image.ipv4.count, image.ipv6.count, representatives.count)
        }
        explainedLock.withLock {
            generation += 1
            explained.removeAll()
            upfront.removeAll()
        }
        if kernel.tableFingerprints()[1 - target] != 0 || tableSlotsInUse.contains(1 - target) {
            kernel.clearRegions(slot: 1 - target)
        }
    }

    /// Recompiles everything for the configuration in force (grants changed). `mutation` held.
    private func reinstall() throws {
        try install(state.withLock { current })
    }

    static func slotKey(_ policy: String, _ grants: [Grant]) -> String {
        ([policy] + grants.map(\.id)).joined(separator: "\u{1}")
    }

    static func effectivePolicy(_ base: Policy, grants: [Grant], catalog: RegionCatalog) throws -> Policy {
        var p = base
        for g in grants {
            var r = Rule(target: try grantTarget(g.allow, catalog: catalog), grant: g)
            r.origin = "grant \(g.id)"
            p.allow.insert(r, at: 0)
        }
        return p
    }

    /// What `--allow` names: a group, a country, a cloud region, or a hostname.
    static func grantTarget(_ text: String, catalog: RegionCatalog = .builtIn) throws -> Rule.Target {
        if let kind = text.firstIndex(of: "="), ["region", "country", "jurisdiction", "host"].contains(String(text[..<kind])) {
            let value = String(text[text.index(after: kind)...])
            switch text[..<kind] {
            case "region": return .regions([value])
            case "country":
                guard catalog.isKnownCountry(value) else { throw ServiceError("'\(value)' is not a country code (ISO 3166 alpha-2, such as US)") }
                return .countries([value.uppercased()])
            case "jurisdiction":
                guard catalog.groups[value] != nil else { throw ServiceError("'\(value)' is not a known jurisdiction; known: \(catalog.groups.keys.sorted().joined(separator: ", "))") }
                return .jurisdictions([value])
            default:
                guard let g = HostnameGlob(value) else { throw ServiceError("'\(value)' is not a hostname pattern") }
                return .hosts([g])
            }
        }
        if catalog.groups[text] != nil { return .jurisdictions([text]) }
        if text.count == 2, catalog.isKnownCountry(text.uppercased()) { return .countries([text.uppercased()]) }
        if text.contains(":") { return .regions([text]) }
        if text.contains("."), let g = HostnameGlob(text) { return .hosts([g]) }
        throw ServiceError("'\(text)' is not a known country, jurisdiction, cloud region (provider:region) or hostname; write region=NAME for a region of your own tables")
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
            let cfg = state.withLock { current }
            let policyName = name ?? cfg.config.defaultPolicy
            guard cfg.config.policies[policyName] != nil else {
                throw ServiceError("no policy named '\(policyName)' in \(cfg.config.path); defined: \(cfg.config.policyOrder.joined(separator: ", "))")
            }
            let (slot, table, previous) = state.withLock {
                (slots.first { $0.value.key == Self.slotKey(policyName, []) }?.key, tableSlot, assignments[cgroupID])
            }
            guard let slot else {
                throw ServiceError("policy \(policyName) is not compiled into the kernel; run 'bordergate reload'")
            }
            try apply(UInt32(slot), UInt32(table))
            publish { assignments[cgroupID] = Assignment(cgroup: cgroup, policy: policyName, grants: []) }
            if let previous, !previous.grants.isEmpty { try? reinstall() } // its grant variant goes
            saveAssignments()
            return policyName
        }
    }

    /// Removes a cgroup's guard: `apply` deletes the kernel's entry and links while no reload or
    /// grant can write the entry back; then its policy and grants are forgotten.
    public func detach(cgroupID: UInt64, apply: () -> Bool) -> Bool {
        mutation.withLock {
            let found = apply()
            let gone = state.withLock { assignments.removeValue(forKey: cgroupID) }
            if let gone {
                if !gone.grants.isEmpty { try? reinstall() }
                saveAssignments()
            }
            return found
        }
    }

    public func policyName(cgroupID: UInt64) -> String? {
        state.withLock { assignments[cgroupID]?.policy }
    }

    public func grants(cgroupID: UInt64) -> [Grant] {
        state.withLock { assignments[cgroupID]?.grants ?? [] }
    }

    // MARK: Grants

    /// Adds a just-in-time exception to a guarded cgroup. The kernel ends it on time by itself.
    public func grant(cgroupID: UInt64, allow: String, duration: TimeInterval, reason: String, by: String?) throws -> Grant {
        let (g, a): (Grant, Assignment) = try mutation.withLock {
            guard var a = state.withLock({ assignments[cgroupID] }), a.policy != Self.parkedName else {
                throw ServiceError("that cgroup is not guarded with a policy; grants apply to guarded cgroups (see 'bordergate status')")
            }
            _ = try Self.grantTarget(allow, catalog: state.withLock { current.database.catalog })
            grantCounter += 1
            let g = Grant(id: "g\(grantCounter)-\(String(UInt32.random(in: 0...UInt32.max) % 0xffff, radix: 16))",
                          allow: allow, reason: reason, expires: Date().timeIntervalSince1970 + duration, grantedBy: by,
                          endsBootNanos: KernelGuard.bootClockNanos() + UInt64(duration * 1e9))
            let before = a
            a.grants.append(g)
            publish { assignments[cgroupID] = a }
            do {
                try reinstall()
            } catch {
                publish { assignments[cgroupID] = before }
                throw error
            }
            return (g, a)
        }
        hub.publish(AuditEvent(type: .policy, verdict: .grant, reason: reason, policy: a.policy,
                               message: "grant \(g.id) on \(a.cgroup): allow \(allow) until \(AuditTime.format(Date(timeIntervalSince1970: g.expires)))\(by.map { " (by \($0))" } ?? ""): \(reason)"))
        return g
    }

    /// Ends grants whose time is up (the kernel has already stopped applying them). Every second.
    public func expireGrants() {
        var ended: [(Assignment, Grant)] = []
        mutation.withLock {
            let before = state.withLock { assignments }
            var after = before
            let boot = KernelGuard.bootClockNanos()
            for (id, a) in before {
                let over = a.grants.filter { $0.endsBootNanos <= boot }
                guard !over.isEmpty else { continue }
                after[id]?.grants.removeAll { $0.endsBootNanos <= boot }
                ended += over.map { (a, $0) }
            }
            guard !ended.isEmpty else { return }
            publish { assignments = after }
            do {
                try reinstall()
            } catch {
                // The kernel stopped applying the grant at its time regardless; this only keeps
                // the other grants of the cgroup from coming back. Retried next second.
                publish { assignments = before }
                ended = []
                logger.error("cannot recompile after grants ended: \(error); retrying in a second")
            }
        }
        for (a, g) in ended {
            hub.publish(AuditEvent(type: .policy, verdict: .grantExpired, reason: g.reason, policy: a.policy,
                                   message: "grant \(g.id) on \(a.cgroup) expired: allow \(g.allow) is no longer in force"))
        }
    }

    // MARK: Explaining verdicts

    /// The policy compiled into a slot (also one freed recently), for events.
    public func policy(slot: UInt32) -> Policy? {
        state.withLock { slots[Int(slot)]?.policy ?? pending[Int(slot)]?.policy ?? retired[Int(slot)]?.slot.policy }
    }

    public struct Explanation {
        public var destination: AuditEvent.Destination
        public var policy: String
        public var rule: String
        public var reason: String
    }

    /// ``explain(ip:port:slot:udp:host:process:verdict:)`` for a kernel verdict (no hostname, no
    /// process), remembered.
    public func explainKernelVerdict(ip: String, port: Int, slot: UInt32, udp: Bool, verdict: String) -> Explanation {
        let key = KernelVerdictKey(slot: slot, udp: udp, verdict: verdict, ip: ip)
        let (cached, gen) = explainedLock.withLock { (explained[key], generation) }
        if var hit = cached {
            hit.destination.port = port
            return hit
        }
        let x = explain(ip: ip, port: port, slot: slot, udp: udp, host: .unknown, process: .unknown, verdict: verdict)
        explainedLock.withLock {
            guard generation == gen else { return } // an install ran meanwhile: not for keeping
            if explained.count >= 8192 { explained.removeAll(keepingCapacity: true) }
            explained[key] = x
        }
        return x
    }

    /// Region, policy, rule and reason of a verdict, in words. `host` and `process` say what the
    /// decider knew: the kernel knows neither.
    public func explain(ip: String, port: Int, slot: UInt32, udp: Bool, host: DestinationFacts.Host,
                        process: ProcessFacts, verdict: String) -> Explanation {
        explanation(of: judge(ip: ip, port: port, slot: slot, udp: udp, host: host, process: process), udp: udp, verdict: verdict)
    }

    /// One lookup of the destination and one evaluation of the slot's policy: what the
    /// explanation and the proxy's verdict are both made from.
    private struct Judgement {
        var facts: DestinationFacts
        var destination: AuditEvent.Destination
        var slot: UInt32
        var policy: Policy?
        var outcome: PolicyOutcome?
    }

    private func judge(ip: String, port: Int, slot: UInt32, udp: Bool, host: DestinationFacts.Host,
                       process: ProcessFacts) -> Judgement {
        var (facts, _) = config.facts(ip: ip, host: host)
        if udp { facts.host = .none }
        let dest = AuditEvent.Destination(ip: ip, port: port, host: { if case .name(let h) = host { return h }; return nil }(),
                                          region: facts.region, country: facts.country,
                                          jurisdictions: facts.jurisdictions.isEmpty ? nil : facts.jurisdictions)
        let policy = policy(slot: slot)
        return Judgement(facts: facts, destination: dest, slot: slot, policy: policy,
                         outcome: policy?.evaluate(facts, process: process))
    }

    private func explanation(of j: Judgement, udp: Bool, verdict: String) -> Explanation {
        let (facts, dest) = (j.facts, j.destination)
        guard let policy = j.policy, let outcome = j.outcome else {
            return Explanation(destination: dest, policy: "?", rule: "?", reason: "policy slot \(j.slot) is unknown to this daemon (set by an earlier one)")
        }
        switch outcome {
        case .decided(let action, let rule):
            var reason = policy.reason(action, rule: rule, dest: facts)
            if verdict == "audit" { reason = "audit mode, would be refused: " + reason }
            else if action == .allow && verdict == "deny" { reason = "refused although " + reason }
            return Explanation(destination: dest, policy: policy.name, rule: policy.ruleLabel(rule), reason: reason)
        case .undecided(let rule):
            let needs = policy.ruleNeedsProcess(rule) ? "the process" : "the hostname"
            let why: String
            if udp {
                why = verdict == "audit" ? "needs \(needs), which UDP cannot show: would be refused (audit mode)"
                                         : "needs \(needs), which UDP cannot show: refused (fail closed)"
            } else {
                why = "needs \(needs): relayed through the proxy to decide"
            }
            return Explanation(destination: dest, policy: policy.name, rule: policy.ruleLabel(rule),
                               reason: "\(facts.description): \(policy.ruleLabel(rule)) of policy \(policy.name) \(why)")
        }
    }

    // MARK: The proxy's share

    /// A redirected connection before any byte: its explanation, and whether it still needs a
    /// verdict from the proxy (the hostname decides, or the policy refuses it and the proxy must
    /// say so in the protocol's words). Remembered per slot, address and process, as every
    /// relayed connection asks.
    public func proxyUpfront(ip: String, port: Int, slot: UInt32, process: ProcessFacts) -> (Explanation, needsVerdict: Bool) {
        let key = UpfrontKey(slot: slot, ip: ip, uid: process.uid, exe: process.exe)
        let (cached, gen) = explainedLock.withLock { (upfront[key], generation) }
        if let hit = cached {
            var x = hit.0
            x.destination.port = port
            return (x, hit.1)
        }
        let j = judge(ip: ip, port: port, slot: slot, udp: false, host: .unknown, process: process)
        let x = explanation(of: j, udp: false, verdict: "redirect")
        var needs = true
        if case .decided(.allow, _)? = j.outcome { needs = false }
        explainedLock.withLock {
            guard generation == gen else { return }
            if upfront.count >= 8192 { upfront.removeAll(keepingCapacity: true) }
            upfront[key] = (x, needs)
        }
        return (x, needs)
    }

    /// The verdict once the proxy has looked at the first bytes. What cannot be decided is refused
    /// (in audit mode: relayed and reported).
    public func proxyVerdict(ip: String, port: Int, slot: UInt32, host: HostObservation, process: ProcessFacts) -> ProxyVerdict {
        let hostFact: DestinationFacts.Host
        switch host {
        case .name(let h): hostFact = .name(h)
        case .none: hostFact = .none
        case .unreadable: hostFact = .unknown
        }
        let j = judge(ip: ip, port: port, slot: slot, udp: false, host: hostFact, process: process)
        let x = explanation(of: j, udp: false, verdict: "redirect")
        let facts = j.facts
        guard let policy = j.policy, let outcome = j.outcome else {
            return ProxyVerdict(relay: false, verdict: .deny, reason: x.reason + ": refused (fail closed)", policy: x.policy,
                                rule: x.rule, destination: x.destination)
        }
        let refusal: String
        switch outcome {
        case .decided(.allow, _):
            return ProxyVerdict(relay: true, verdict: .redirect, reason: x.reason, policy: x.policy, rule: x.rule,
                                destination: x.destination)
        case .decided(.deny, let rule):
            refusal = policy.reason(.deny, rule: rule, dest: facts)
        case .undecided(let rule):
            let what = policy.ruleNeedsProcess(rule) ? "the process is unknown" : "the hostname could not be read"
            refusal = "\(facts.description): \(policy.ruleLabel(rule)) of policy \(policy.name) cannot be decided (\(what)): refused (fail closed)"
        }
        if policy.mode == .audit {
            return ProxyVerdict(relay: true, verdict: .audit, reason: "audit mode, would be refused: " + refusal,
                                policy: x.policy, rule: x.rule, destination: x.destination)
        }
        return ProxyVerdict(relay: false, verdict: .deny, reason: refusal, policy: x.policy, rule: x.rule,
                            destination: x.destination)
    }

    /// The kernel's copy of the tables: prefixes and memory, for `status`.
    public func kernelTableSummary() -> [String: UInt64] {
        var out = kernel.residencyMemory()
        let (n4, n6, classes, inUse) = state.withLock { (installed.ipv4, installed.ipv6, installed.classes, slots.count) }
        out["ipv4_prefixes"] = UInt64(n4)
        out["ipv6_prefixes"] = UInt64(n6)
        out["kernel_classes"] = UInt64(classes)
        out["policy_slots_in_use"] = UInt64(inUse)
        return out
    }

    // MARK: Persistence

    private static func readAssignments(path: String) -> [UInt64: Assignment] {
        guard let data = FileManager.default.contents(atPath: path),
              let raw = try? JSONDecoder().decode([String: Assignment].self, from: data) else { return [:] }
        var out: [UInt64: Assignment] = [:]
        for (k, v) in raw { if let id = UInt64(k) { out[id] = v } }
        return out
    }

    /// Which policy each guarded cgroup has, for a restarted daemon (grants are not kept).
    private func saveAssignments() {
        guard persist else { return }
        var raw: [String: Assignment] = [:]
        for (id, a) in state.withLock({ assignments }) {
            var b = a
            b.grants = []
            raw[String(id)] = b
        }
        guard let data = try? JSONEncoder().encode(raw) else { return }
        let tmp = settings.attachmentsPath + ".new"
        try? FileManager.default.createDirectory(atPath: settings.stateDirectory, withIntermediateDirectories: true)
        if FileManager.default.createFile(atPath: tmp, contents: data) {
            rename(tmp, settings.attachmentsPath)
        }
    }
}
