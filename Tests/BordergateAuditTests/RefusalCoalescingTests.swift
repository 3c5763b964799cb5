import Foundation
import Testing
@testable import BordergateAudit

private func tempLogPath() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bg-coalesce-\(UUID().uuidString)")
    return dir.appendingPathComponent("audit/events.jsonl").path
}

private func refusal(pid: Int = 7, ip: String = "198.51.100.200", port: Int = 80, count: UInt64? = nil) -> AuditEvent {
    var e = AuditEvent(type: .connect, verdict: .deny, reason: "country US is not allowed by policy eu-only",
                       process: .init(pid: pid, ppid: 1, uid: 65534, user: "nobody", comm: "python3", exe: nil, cgroup: "/flood"),
                       destination: .init(ip: ip, port: port), protocol: .tcp, policy: "eu-only", rule: "default")
    e.count = count
    return e
}

private func pass(_ id: String) -> AuditEvent {
    AuditEvent(id: id, type: .connect, verdict: .pass, destination: .init(ip: "198.51.100.10", port: 80), protocol: .tcp)
}

/// Read back: every event of the log, and the total a refusal stands for.
private func readBack(_ path: String) throws -> (events: [AuditEvent], refusals: UInt64, dropped: UInt64) {
    var events: [AuditEvent] = []
    _ = try AuditLog.read(path: path) { e, _ in events.append(e) }
    let refusals = events.filter { $0.type == .connect && $0.verdict == .deny }.reduce(0) { $0 + ($1.count ?? 1) }
    let dropped = events.filter { $0.type == .drop }.reduce(0) { $0 + ($1.count ?? 0) }
    return (events, refusals, dropped)
}

@Suite struct RefusalCoalescingTests {
    @Test func theCoalescerKeepsOneEventPerProcessAndDestinationWithTheSum() {
        var c = RefusalCoalescer(maxKeys: 2)
        for _ in 0..<5 { c.add(refusal()) }
        c.add(refusal(count: 10)) // a kernel aggregate adds its count
        c.add(refusal(port: 443))
        c.add(refusal(port: 22))  // no room for a third key
        c.add(refusal(port: 25, count: 4))
        let out = c.drain()
        #expect(out.count == 3)
        #expect(out[0].destination?.port == 80 && out[0].count == 15)
        #expect(out[0].message?.contains("15 refusals aggregated") == true)
        #expect(out[1].destination?.port == 443 && out[1].count == nil, "a single refusal stays as it was")
        #expect(out[2].type == .drop && out[2].count == 5)
        #expect(c.isEmpty)
        #expect(c.drain().isEmpty)
    }

    @Test func onlyRefusedConnectionsAreCoalesced() {
        #expect(RefusalCoalescer.isRefusal(refusal()))
        #expect(!RefusalCoalescer.isRefusal(pass("p")))
        #expect(!RefusalCoalescer.isRefusal(AuditEvent(type: .connect, verdict: .redirect)))
        #expect(!RefusalCoalescer.isRefusal(AuditEvent(type: .close, verdict: .deny)))
    }

    @Test func aFloodOfRefusalsIsCoalescedAndNoPassIsLost() throws {
        let path = tempLogPath()
        let hub = AuditHub(log: try AuditLog(path: path), capacity: 64)
        let n = 20_000
        hub.publish(pass("first"))
        for i in 0..<n {
            hub.publish(refusal(pid: 7 + i % 4))
            if i % 1000 == 0 { hub.publish(pass("p\(i)")) }
        }
        hub.publish(pass("last"))
        hub.flush()
        let (events, refusals, dropped) = try readBack(path)
        let ids = Set(events.map(\.id))
        #expect(ids.contains("first") && ids.contains("last"))
        for i in stride(from: 0, to: n, by: 1000) { #expect(ids.contains("p\(i)"), "pass p\(i) was lost") }
        #expect(refusals + dropped == UInt64(n), "every refusal is counted: \(refusals) + \(dropped)")
        #expect(dropped == 0, "four keys fit the coalescer")
        let lines = events.filter { $0.type == .connect && $0.verdict == .deny }.count
        #expect(lines < n / 10, "\(lines) refusal lines for \(n) refusals")
        #expect(hub.counters.coalesced > 0)
        hub.shutdown()
        let report = try Evidence.verify(files: [path], key: nil, stateLogDirectory: (path as NSString).deletingLastPathComponent)
        #expect(report.problems.isEmpty, "\(report.problems)")
    }

    @Test func refusalsToMoreDestinationsThanTheCoalescerHoldsBecomeADropEventWithTheCount() throws {
        let path = tempLogPath()
        let hub = AuditHub(log: try AuditLog(path: path), capacity: 16)
        let n = 30_000
        for i in 0..<n { hub.publish(refusal(ip: "198.51.100.\(128 + i % 100)", port: 1 + i % 5000)) }
        hub.publish(pass("after"))
        hub.flush()
        let (events, refusals, dropped) = try readBack(path)
        #expect(events.contains { $0.id == "after" })
        #expect(refusals + dropped == UInt64(n), "\(refusals) + \(dropped)")
        #expect(dropped > 0, "5000 destinations do not fit 1024 keys")
        #expect(events.contains { $0.type == .drop && $0.reason == "audit writer queue full" })
        hub.shutdown()
    }

    @Test func passEventsPastTheCapacityWaitForTheWriterInsteadOfBeingDropped() throws {
        let path = tempLogPath()
        let hub = AuditHub(log: try AuditLog(path: path), capacity: 8)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<500 { hub.publish(pass("t\(t)-\(i)")) }
        }
        hub.flush()
        let (events, _, _) = try readBack(path)
        #expect(events.filter { $0.verdict == .pass }.count == 2000)
        hub.shutdown()
    }

    @Test func theCountIsWrittenAndReadBack() throws {
        let line = refusal(count: 42).jsonLine()
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.contains(#""count":42"#))
        let back = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: line)
        #expect(back.count == 42)
        #expect(!String(decoding: refusal().jsonLine(), as: UTF8.self).contains(#""count":"#))
    }
}
