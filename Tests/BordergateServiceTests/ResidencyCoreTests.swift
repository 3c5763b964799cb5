import BordergateAudit
import BordergateKernel
import BordergatePolicy
import BordergateRegions
import Foundation
import Logging
import Testing
@testable import BordergateService

/// The kernel's policy slots, tries and guarded-cgroup table, in memory: what the residency core
/// writes can be read back without root or BPF.
final class MemorySlotStore: PolicySlotStore, @unchecked Sendable {
    private let lock = NSLock()
    let policySlotCount: Int
    let regionClassLimit: Int
    private(set) var rows: [Int: [KernelGuard.PolicyRow]] = [:]
    private(set) var guarded: [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)] = [:]
    private(set) var grantEnds: [UInt64: UInt64] = [:]
    private var fingerprints: [UInt64] = [0, 0]
    private(set) var trieLoads = 0
    /// Fails the next setCgroupPolicy, as a kernel write can.
    var failNextCgroupUpdate = false

    init(slots: Int = 16, classes: Int = 64) {
        policySlotCount = slots
        regionClassLimit = classes
    }

    func tableFingerprints() -> [UInt64] { lock.withLock { fingerprints } }

    func loadRegions(slot: Int, fingerprint: UInt64, ipv4: [(address: UInt32, length: UInt8, regionClass: UInt32)],
                     ipv6: [(address: [UInt8], length: UInt8, regionClass: UInt32)]) throws {
        lock.withLock {
            fingerprints[slot] = fingerprint
            trieLoads += 1
        }
    }

    func clearRegions(slot: Int) { lock.withLock { fingerprints[slot] = 0 } }

    func writePolicy(slot: Int, rows r: [KernelGuard.PolicyRow], fallback: KernelGuard.PolicyRow) throws {
        precondition(slot >= 0 && slot < policySlotCount)
        lock.withLock { rows[slot] = r }
    }

    func guardedSlots() -> [UInt64: (policySlot: Int, baseSlot: Int, tableSlot: Int)] { lock.withLock { guarded } }

    func setCgroupPolicy(cgroupID: UInt64, policySlot: UInt32, tableSlot: UInt32, baseSlot: UInt32?, grantEnds ends: UInt64?) throws {
        try lock.withLock {
            if failNextCgroupUpdate {
                failNextCgroupUpdate = false
                throw KernelError("injected failure")
            }
            guarded[cgroupID] = (Int(policySlot), Int(baseSlot ?? policySlot), Int(tableSlot))
            grantEnds[cgroupID] = ends
        }
    }

    func residencyMemory() -> [String: UInt64] { ["policy_rows": UInt64(lock.withLock { rows.count })] }

    /// What the residency core's attach callback does in the real kernel.
    func attach(_ id: UInt64, policySlot: UInt32, tableSlot: UInt32) {
        lock.withLock { guarded[id] = (Int(policySlot), Int(policySlot), Int(tableSlot)) }
    }
}

/// A residency core on a memory store, with its config, state and audit log in a directory of its own.
struct ResidencyFixture {
    let dir: String
    let store: MemorySlotStore
    let hub: AuditHub
    let residency: Residency
    let settings: Settings

    static let config = """
        policies:
          eu:
            allow:
              - jurisdiction: EU
          open: {}
        """

    init(_ name: String, store: MemorySlotStore = MemorySlotStore(), config: String = Self.config, persist: Bool = true,
         saved: [UInt64: Assignment] = [:]) throws {
        dir = NSTemporaryDirectory() + "bg-residency-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try config.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        settings = Settings(stateDirectory: dir, pinRoot: dir + "/pins", controlSocket: dir + "/sock", proxyPort: 1,
                            configPath: dir + "/config.yaml", environment: [:])
        if !saved.isEmpty { try AttachmentStore(path: settings.attachmentsPath).save(saved) }
        self.store = store
        hub = AuditHub(log: try AuditLog(path: dir + "/audit/events.jsonl"))
        residency = Residency(kernel: store, settings: settings, hub: hub, logger: Logger(label: "test"),
                              initial: try ResidencyConfig.load(settings: settings), persist: persist)
    }

    func attach(_ id: UInt64, _ policy: String? = nil) throws -> String {
        try residency.attach(cgroupID: id, cgroup: "/cg\(id)", policy: policy) { p, t in store.attach(id, policySlot: p, tableSlot: t) }
    }

    func tearDown() {
        hub.shutdown()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite struct ResidencyCoreTests {
    @Test func startCompilesEveryPolicyAndAttachPointsTheCgroupAtItsSlot() throws {
        let f = try ResidencyFixture("attach")
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        #expect(f.store.rows.count == 3, "parked, eu and open")
        #expect(try f.attach(7, "eu") == "eu")
        let slot = try #require(f.store.guarded[7]?.policySlot)
        #expect(f.residency.policy(slot: UInt32(slot))?.name == "eu")
        #expect(f.residency.policyName(cgroupID: 7) == "eu")
        #expect(f.residency.kernelTableSummary()["policy_slots_in_use"] == 3)
        // and it is saved for a restarted daemon
        #expect(AttachmentStore(path: f.settings.attachmentsPath).read()[7] == Assignment(cgroup: "/cg7", policy: "eu"))
        #expect(throws: ResidencyError.self) { try f.attach(8, "nope") }
        #expect(f.store.guarded[8] == nil)
    }

    @Test func aRestartNamesTheSlotsThePinsPointAtAndParksWhatItDoesNotKnow() throws {
        // A previous daemon left cgroup 1 on slot 9 (policy eu, saved) and cgroup 2 on slot 10
        // (no saved policy); the kernel judged by those slots while no daemon ran.
        let store = MemorySlotStore()
        try store.setCgroupPolicy(cgroupID: 1, policySlot: 9, tableSlot: 0, baseSlot: 9, grantEnds: nil)
        try store.setCgroupPolicy(cgroupID: 2, policySlot: 10, tableSlot: 0, baseSlot: 10, grantEnds: nil)
        let f = try ResidencyFixture("restart", store: store, saved: [1: Assignment(cgroup: "/one", policy: "eu")])
        defer { f.tearDown() }
        try f.residency.start(pinned: store.guardedSlots(), name: { "/cg\($0)" })
        let old = f.residency.explainKernelVerdict(ip: "203.0.113.10", port: 443, slot: 9, udp: false, verdict: "deny")
        #expect(old.policy == "eu", "\(old.reason)")
        #expect(!old.reason.contains("unknown to this daemon"))
        #expect(f.residency.explainKernelVerdict(ip: "203.0.113.10", port: 443, slot: 10, udp: false, verdict: "deny").policy == "?",
                "nobody knows what slot 10 held")
        #expect(f.residency.policyName(cgroupID: 1) == "eu")
        #expect(f.residency.policyName(cgroupID: 2) == PolicyVariant.parkedName)
        // both moved to fresh slots, and not onto the ones the kernel may still name
        let now = try #require(store.guarded[1]?.policySlot)
        #expect(![9, 10].contains(now))
        #expect(f.residency.policy(slot: UInt32(store.guarded[2]!.policySlot))?.name == PolicyVariant.parkedName)
    }

    @Test func aGrantGetsASlotOfItsOwnAndItsEndFallsBackToTheBase() throws {
        let f = try ResidencyFixture("grant")
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        _ = try f.attach(7, "eu")
        let g = try f.residency.grant(cgroupID: 7, allow: "US", duration: 60, reason: "ticket 1", by: "alice")
        let withGrant = try #require(f.store.guarded[7])
        #expect(withGrant.policySlot != withGrant.baseSlot)
        #expect(f.store.grantEnds[7] == g.endsBootNanos, "the kernel itself ends the grant on time")
        let granted = try #require(f.residency.policy(slot: UInt32(withGrant.policySlot)))
        #expect(granted.allow.first?.grant?.id == g.id)
        #expect(f.residency.policy(slot: UInt32(withGrant.baseSlot))?.allow.first?.grant == nil)
        #expect(f.residency.grants(cgroupID: 7).map(\.id) == [g.id])

        f.residency.expireGrants(bootNanos: g.endsBootNanos)
        #expect(f.residency.grants(cgroupID: 7).isEmpty)
        let after = try #require(f.store.guarded[7])
        #expect(after.policySlot == after.baseSlot && f.store.grantEnds[7] == nil)
        // the grant's slot stays readable for events in flight, and is not reused at once
        #expect(f.residency.policy(slot: UInt32(withGrant.policySlot))?.allow.first?.grant?.id == g.id)
        #expect(![withGrant.policySlot, withGrant.baseSlot].contains(after.policySlot))

        #expect(throws: ResidencyError.self) { try f.residency.grant(cgroupID: 8, allow: "US", duration: 60, reason: "", by: nil) }
        #expect(throws: ResidencyError.self) { try f.residency.grant(cgroupID: 7, allow: "nowhere", duration: 60, reason: "", by: nil) }
        #expect(throws: ResidencyError.self) { try f.residency.grant(cgroupID: 7, allow: "US", duration: 8 * 86400, reason: "", by: nil) }
    }

    @Test func whenSlotsRunOutAGrantIsRefusedAndTheCgroupKeepsWhatItHad() throws {
        // an install writes fresh slots while the old are in use: 3 in use, 3 free, 4 needed
        let store = MemorySlotStore(slots: 6)
        let f = try ResidencyFixture("slots", store: store)
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        _ = try f.attach(7, "eu")
        let before = try #require(store.guarded[7])
        do {
            _ = try f.residency.grant(cgroupID: 7, allow: "US", duration: 60, reason: "", by: nil)
            Issue.record("4 variants do not fit beside 3 in use in 6 slots")
        } catch ResidencyError.tooFewSlots(let needed, let free) {
            #expect(needed == 4 && free == 3, "needed \(needed), free \(free)")
        }
        #expect(store.guarded[7]! == before)
        #expect(f.residency.grants(cgroupID: 7).isEmpty)
    }

    @Test func aFailedKernelWriteLeavesTheNewSlotsReadable() throws {
        let store = MemorySlotStore()
        let f = try ResidencyFixture("failed-write", store: store)
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        _ = try f.attach(7, "eu")
        store.failNextCgroupUpdate = true
        #expect(throws: KernelError.self) { try f.residency.grant(cgroupID: 7, allow: "US", duration: 60, reason: "", by: nil) }
        #expect(f.residency.grants(cgroupID: 7).isEmpty)
        let slot = try #require(store.guarded[7]?.policySlot)
        #expect(f.residency.policy(slot: UInt32(slot))?.name == "eu")
    }

    @Test func aReloadThatDropsAPolicyInUseKeepsTheConfigurationInForce() throws {
        let f = try ResidencyFixture("reload")
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        _ = try f.attach(7, "eu")
        try "policies:\n  open: {}\n".write(toFile: f.dir + "/config.yaml", atomically: true, encoding: .utf8)
        do {
            try f.residency.reload(trigger: "test")
            Issue.record("eu guards /cg7")
        } catch let e as ReloadError {
            guard case ResidencyError.policyInUse(_, "eu", "/cg7")? = e.cause as? ResidencyError else { Issue.record("\(e)"); return }
        }
        #expect(f.residency.config.config.policyOrder == ["eu", "open"])
        // a good one takes effect
        try "policies:\n  eu:\n    allow:\n      - country: DE\n  open: {}\n".write(toFile: f.dir + "/config.yaml", atomically: true, encoding: .utf8)
        #expect(try f.residency.reload(trigger: "test").contains("2 policies"))
        let slot = try #require(f.store.guarded[7]?.policySlot)
        #expect(f.residency.policy(slot: UInt32(slot))?.allow.first?.targetDescription == "country DE")
    }

    @Test func freeSlotsSkipThoseInUseAndThoseFreedMomentsAgo() {
        let now = Date()
        let free = Residency.freeSlots(count: 6, reserved: [0, 1], retired: [2: now, 3: now.addingTimeInterval(-Residency.reuseDelay)], now: now)
        #expect(free == [3, 4, 5])
    }

    @Test func explanationsReadOneSnapshotAndItsCacheStartsAfreshWithTheNext() throws {
        let f = try ResidencyFixture("snapshot")
        defer { f.tearDown() }
        try f.residency.start(pinned: [:], name: { "\($0)" })
        _ = try f.attach(7, "eu")
        let slot = UInt32(f.store.guarded[7]!.policySlot)
        let before = f.residency.snapshot
        let x = before.explainKernelVerdict(ip: "198.51.100.1", port: 80, slot: slot, udp: false, verdict: "deny")
        #expect(x.policy == "eu")
        _ = try f.residency.grant(cgroupID: 7, allow: "US", duration: 60, reason: "", by: nil)
        let after = f.residency.snapshot
        #expect(before !== after)
        #expect(before.policies[Int(slot)]?.name == "eu", "an old snapshot never changes")
        #expect(after.assignments[7]?.grants.count == 1 && before.assignments[7]?.grants.isEmpty == true)
    }

    @Test func attachmentsRoundTripWithoutGrantsAndAFailedSaveKeepsErrno() throws {
        let dir = NSTemporaryDirectory() + "bg-attachments-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = AttachmentStore(path: dir + "/state/attachments.json")
        let g = Grant(id: "g1", allow: "US", reason: "", expires: 0, grantedBy: nil, endsBootNanos: 1)
        try store.save([7: Assignment(cgroup: "/ci", policy: "eu", grants: [g])])
        #expect(store.read() == [7: Assignment(cgroup: "/ci", policy: "eu")], "grants are not kept")
        #expect(AttachmentStore(path: dir + "/absent.json").read().isEmpty)
        do {
            try AttachmentStore(path: "/proc/self/no-such-dir/attachments.json").save([:])
            Issue.record("/proc takes no files")
        } catch {
            #expect(error.errno != nil && error.path.hasPrefix("/proc/self/no-such-dir/"), "\(error)")
        }
    }
}
