import Foundation
import Testing
@testable import BordergateAudit

private func tempLogPath() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bg-audit-\(UUID().uuidString)")
    return dir.appendingPathComponent("audit/events.jsonl").path
}

@Suite struct AuditLogTests {
    @Test func appendsAndReadsBackInOrder() throws {
        let path = tempLogPath()
        let log = try AuditLog(path: path)
        for i in 0..<100 {
            try log.append(AuditEvent(id: "e\(i)", type: .daemon).jsonLine())
        }
        var ids: [String] = []
        let r = try AuditLog.read(path: path) { e, _ in ids.append(e.id) }
        #expect(ids == (0..<100).map { "e\($0)" })
        #expect(r.skipped == 0)
    }

    @Test func aTornLineIsTerminatedAndSkippedNotGluedToTheNext() throws {
        let path = tempLogPath()
        do {
            let log = try AuditLog(path: path)
            try log.append(AuditEvent(id: "before", type: .daemon).jsonLine())
        }
        // a crash mid-write leaves half a line
        let h = FileHandle(forWritingAtPath: path)!
        h.seekToEndOfFile()
        h.write(Data(#"{"time":"2026-11-21T19:06:21Z","id":"torn","ty"#.utf8))
        try h.close()
        let log = try AuditLog(path: path)
        try log.append(AuditEvent(id: "after", type: .daemon).jsonLine())
        var ids: [String] = []
        let r = try AuditLog.read(path: path) { e, _ in ids.append(e.id) }
        #expect(ids == ["before", "after"], "nothing recorded before the crash is lost")
        #expect(r.skipped == 1)
    }

    @Test func readStopsAtALimitSoHistoryAndLiveDoNotOverlap() throws {
        let path = tempLogPath()
        let log = try AuditLog(path: path)
        try log.append(AuditEvent(id: "one", type: .daemon).jsonLine())
        let mark = log.currentSize
        try log.append(AuditEvent(id: "two", type: .daemon).jsonLine())
        var ids: [String] = []
        _ = try AuditLog.read(path: path, upTo: mark) { e, _ in ids.append(e.id) }
        #expect(ids == ["one"])
    }

    @Test func anUnwritableStateDirectoryIsOneClearError() {
        #expect {
            _ = try AuditLog(path: "/proc/bordergate-cannot-be-here/audit/events.jsonl")
        } throws: { error in
            // the cause as fields; which flag fixes it is the CLI's to say
            guard let e = error as? AuditError else { return false }
            return e.operation == .createStateDirectory && e.path == "/proc/bordergate-cannot-be-here/audit"
                && e.isStateDirectoryUnusable && "\(e)".hasPrefix("cannot create the state directory /proc/bordergate-cannot-be-here/audit: ")
                && !"\(e)".contains("--")
        }
    }
}

@Suite struct AuditHubTests {
    @Test func liveSubscribersGetMatchingEvents() async throws {
        let hub = AuditHub(log: try AuditLog(path: tempLogPath()))
        let sub = hub.subscribe(filter: EventFilter(type: .connect))
        hub.publish(AuditEvent(id: "skip", type: .daemon))
        hub.publish(AuditEvent(id: "keep", type: .connect))
        hub.shutdown()
        var got: [String] = []
        for await item in sub.items { if case .event(let e, _) = item { got.append(e.id) } }
        #expect(got == ["keep"])
    }

    @Test func aSlowSubscriberIsToldHowManyItMissedAndNeverBlocksPublishing() async throws {
        let hub = AuditHub(log: try AuditLog(path: tempLogPath()))
        let slow = hub.subscribe(capacity: 10)
        for i in 0..<1000 { hub.publish(AuditEvent(id: "e\(i)", type: .connect)) } // nobody reads
        hub.flush() // all delivered (or dropped) before the reader starts
        var iterator = slow.items.makeAsyncIterator()
        var firstBatch: [String] = []
        for _ in 0..<10 {
            if case .event(let e, _) = await iterator.next()! { firstBatch.append(e.id) }
        }
        #expect(firstBatch == (0..<10).map { "e\($0)" })
        hub.publish(AuditEvent(id: "late", type: .connect))
        guard case .missed(let n) = await iterator.next()! else {
            Issue.record("expected a missed notice before the next event")
            return
        }
        #expect(n == 990)
        guard case .event(let e, _) = await iterator.next()! else {
            Issue.record("expected the event after the notice")
            return
        }
        #expect(e.id == "late")
        // and the log has everything
        hub.flush()
        var count = 0
        _ = try AuditLog.read(path: hub.log.path) { _, _ in count += 1 }
        #expect(count == 1001)
    }

    @Test func subscriptionMarksWhereHistoryEnds() async throws {
        let hub = AuditHub(log: try AuditLog(path: tempLogPath()))
        hub.publish(AuditEvent(id: "old", type: .daemon))
        hub.flush()
        let sub = hub.subscribe()
        hub.publish(AuditEvent(id: "new", type: .daemon))
        hub.shutdown()
        var history: [String] = []
        _ = try AuditLog.read(path: hub.log.path, upTo: sub.historyEnd) { e, _ in history.append(e.id) }
        var live: [String] = []
        for await item in sub.items { if case .event(let e, _) = item { live.append(e.id) } }
        #expect(history == ["old"])
        #expect(live == ["new"])
    }

    @Test func anEventStillQueuedWhenSomeoneSubscribesArrivesLiveNotTwice() async throws {
        let hub = AuditHub(log: try AuditLog(path: tempLogPath()))
        for i in 0..<200 { hub.publish(AuditEvent(id: "e\(i)", type: .daemon)) }
        let sub = hub.subscribe() // some of these are still queued, none written twice
        for i in 200..<300 { hub.publish(AuditEvent(id: "e\(i)", type: .daemon)) }
        hub.shutdown()
        var seen: [String] = []
        _ = try AuditLog.read(path: hub.log.path, upTo: sub.historyEnd) { e, _ in seen.append(e.id) }
        for await item in sub.items { if case .event(let e, _) = item { seen.append(e.id) } }
        #expect(seen == (0..<300).map { "e\($0)" }, "history then live: every event once, in order")
        var all = 0
        _ = try AuditLog.read(path: hub.log.path) { _, _ in all += 1 }
        #expect(all == 300)
    }

    @Test func shutdownWritesWhatIsStillQueued() throws {
        let path = tempLogPath()
        let hub = AuditHub(log: try AuditLog(path: path))
        for i in 0..<5000 { hub.publish(AuditEvent(id: "e\(i)", type: .connect)) }
        hub.shutdown()
        var count = 0
        _ = try AuditLog.read(path: path) { _, _ in count += 1 }
        #expect(count == 5000)
        #expect(hub.counters.published == 5000)
    }
}

@Suite struct ControlProtocolTests {
    @Test func requestsRoundTrip() throws {
        let r = ControlRequest(command: .events, follow: true, filter: EventFilter(pid: 7, cgroup: "/ci"))
        let back = try JSONDecoder().decode(ControlRequest.self, from: JSONEncoder().encode(r))
        #expect(back == r)
    }

    @Test func noticesAreNotEvents() throws {
        let data = try JSONEncoder().encode(ControlNotice(control: "missed", count: 3))
        #expect((try? AuditEvent.makeDecoder().decode(AuditEvent.self, from: data)) == nil)
        let n = try JSONDecoder().decode(ControlNotice.self, from: data)
        #expect(n.count == 3)
    }
}
