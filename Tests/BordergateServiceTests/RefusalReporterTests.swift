import BordergateAudit
import CBordergateABI
import Foundation
import Testing
@testable import BordergateKernel
@testable import BordergateService

/// The host's half of the kernel's refusal aggregation: each refusal a key counts is reported
/// once, whether a sweep reads the key while its second is still counting or after it is over.
@Suite struct RefusalReporterTests {
    func count(_ n: UInt64, firstReported: Bool = true, port: UInt16 = 80) -> RefusalCount {
        var k = bg_refusal_key()
        k.cgroup_id = 42
        k.second = 1000
        k.addr = KernelAddress("198.51.100.200")!.raw
        k.tgid = 7
        k.port = port
        k.protocol = 6
        k.family = 2
        var v = bg_refusal_count()
        v.count = n
        v.flags = firstReported ? BG_REFUSAL_EMITTED : 0
        return RefusalCount(key: k, value: v)
    }

    func firstEvent(port: UInt16 = 80) -> KernelConnectEvent {
        var raw = bg_connect_event()
        raw.verdict = UInt32(BG_VERDICT_DENY.rawValue)
        raw.protocol = 6
        raw.id.cgroup_id = 42
        raw.id.tgid = 7
        raw.id.time_ns = 1000 * 1_000_000_000 + 5
        raw.dst.addr = KernelAddress("198.51.100.200")!.raw
        raw.dst.port = port
        raw.dst.family = 2
        return KernelConnectEvent(raw)
    }

    @Test func aKeyIsReportedInDeltasAndTheRestWhenItIsTaken() {
        let r = RefusalReporter(baseline: (0, 0))
        let first = AuditEvent(id: "first", type: .connect, verdict: .deny)
        r.noteFirst(firstEvent(), first)
        let a = r.unreported(count(5), done: false)
        #expect(a.first?.id == "first" && a.count == 4, "the first was an event of its own")
        #expect(r.unreported(count(5), done: false).count == 0, "nothing new")
        #expect(r.unreported(count(9), done: false).count == 4)
        let last = r.unreported(count(12), done: true)
        #expect(last.first?.id == "first" && last.count == 3)
        // the key is forgotten: a later second's key starts afresh
        let again = r.unreported(count(2), done: true)
        #expect(again.first == nil && again.count == 1)
    }

    @Test func aKeyWhoseFirstEventWasLostIsReportedWhole() {
        let r = RefusalReporter(baseline: (0, 0))
        let c = r.unreported(count(6, firstReported: false), done: true)
        #expect(c.first == nil && c.count == 6)
    }

    @Test func theFirstEventIsMatchedByItsKey() {
        let r = RefusalReporter(baseline: (0, 0))
        r.noteFirst(firstEvent(port: 443), AuditEvent(id: "https", type: .connect, verdict: .deny))
        #expect(r.unreported(count(3), done: true).first == nil, "another port is another destination")
        #expect(r.unreported(count(3, port: 443), done: true).first?.id == "https")
    }

    @Test func dropsAreReportedAsTheIncreaseSinceTheLastLook() {
        let r = RefusalReporter(baseline: (10, 20))
        let a = r.newDrops((10, 25), host: 0)
        #expect(a.events == 0 && a.refusals == 5 && a.host == 0)
        let b = r.newDrops((13, 25), host: 2)
        #expect(b.events == 3 && b.refusals == 0 && b.host == 2)
        let c = r.newDrops((13, 25), host: 2)
        #expect(c.events == 0 && c.refusals == 0 && c.host == 0)
    }
}
