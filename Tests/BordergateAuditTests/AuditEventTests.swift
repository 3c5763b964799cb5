import Foundation
import Testing
@testable import BordergateAudit

@Suite struct AuditEventTests {
    static let sample = AuditEvent(
        time: Date(timeIntervalSince1970: 1_795_288_381.123456), id: "x-1", type: .connect, verdict: .redirect,
        reason: "cgroup is guarded",
        process: .init(pid: 4242, ppid: 4200, uid: 1000, user: "ci", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci/job-17"),
        destination: .init(ip: "203.0.113.7", port: 443, host: "api.example.com"),
        protocol: .tcp, policy: "default", connection: "abc-1")

    @Test func jsonFollowsTheDesignOrderAndRoundTrips() throws {
        let line = String(decoding: Self.sample.jsonLine(), as: UTF8.self)
        #expect(line.hasPrefix(#"{"time":"2026-11-21T"#))
        let keys = ["\"time\"", "\"id\"", "\"type\"", "\"verdict\"", "\"reason\"", "\"process\"", "\"destination\"", "\"protocol\"", "\"policy\"", "\"connection\""]
        let positions = keys.map { line.range(of: $0)!.lowerBound }
        #expect(positions == positions.sorted())
        #expect(!line.contains("\"bytes\""), "absent fields are left out")
        let back = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line.utf8))
        #expect(back.process == Self.sample.process)
        #expect(back.destination == Self.sample.destination)
        #expect(abs(back.time.timeIntervalSince(Self.sample.time)) < 0.000002)
    }

    @Test func stringsAreEscaped() throws {
        var e = Self.sample
        e.reason = "quote \" backslash \\ newline \n control \u{01} ünïcode"
        let back = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: e.jsonLine())
        #expect(back.reason == e.reason)
    }

    @Test func closeEventCarriesBytesAndDuration() throws {
        let e = AuditEvent(type: .close, connection: "c", bytes: .init(sent: 10, received: 52_428_800), duration_ms: 12.5, end: .closedBy(.server))
        let line = String(decoding: e.jsonLine(), as: UTF8.self)
        #expect(line.contains(#""bytes":{"sent":10,"received":52428800}"#))
        #expect(line.contains(#""duration_ms":12.5"#))
    }

    @Test func sessionMaskAndGuardrailFieldsAreWrittenAndRead() throws {
        var e = AuditEvent(type: .mask, connection: "c-1")
        e.masked = ["field:password": 1, "email": 3, "credit-card": 2]
        var line = String(decoding: e.jsonLine(), as: UTF8.self)
        #expect(line.contains(#""masked":{"credit-card":2,"email":3,"field:password":1}"#), "counts sorted by name")
        #expect(try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line.utf8)).masked == e.masked)

        e = AuditEvent(type: .session, connection: "c-1")
        e.session = .init(id: "c-1", entries: 2, bytes: 512, sha256: String(repeating: "ab", count: 32))
        line = String(decoding: e.jsonLine(), as: UTF8.self)
        #expect(line.contains(#""session":{"id":"c-1","entries":2,"bytes":512,"sha256":"abab"#))
        #expect(try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line.utf8)).session == e.session)

        e = AuditEvent(type: .guardrail, verdict: .deny)
        e.request = "r-7"
        line = String(decoding: e.jsonLine(), as: UTF8.self)
        let back = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line.utf8))
        #expect(back.type == .guardrail && back.request == "r-7")
    }

    @Test func timesHaveMicroseconds() {
        #expect(AuditTime.format(Date(timeIntervalSince1970: 0.5)) == "1970-01-01T00:00:00.500000Z")
        let d = AuditTime.parse("2026-11-21T19:06:21.123456Z")!
        #expect(AuditTime.format(d) == "2026-11-21T19:06:21.123456Z")
        #expect(AuditTime.parse("2026-11-21T19:06:21Z") != nil)
        #expect(AuditTime.parse("yesterday") == nil)
        #expect(AuditTime.parse("2026-11-21T20:06:21+01:00") == AuditTime.parse("2026-11-21T19:06:21Z"))
        #expect(AuditTime.parse("2026-13-21T19:06:21Z") == nil)
    }

    @Test func idsAreUnique() {
        let ids = (0..<1000).map { _ in AuditEvent.newID() }
        #expect(Set(ids).count == 1000)
        // milliseconds in hex, the process tag, the counter in hex
        let parts = AuditEvent.newID(now: Date(timeIntervalSince1970: 1_779_000_000)).split(separator: "-")
        #expect(parts.count == 3)
        #expect(parts.first == Substring(String(UInt64(1_779_000_000_000), radix: 16)))
    }

    @Test func hexMatchesTheStandardLibrary() {
        for v: UInt64 in [0, 1, 9, 10, 15, 16, 255, 0xdead_beef, 1 << 63, .max] {
            #expect(Hex.string(Array("x-".utf8), v) == "x-" + String(v, radix: 16))
        }
    }
}

@Suite struct EventFilterTests {
    let e = AuditEventTests.sample

    @Test func cgroupMatchesItselfAndDescendantsOnly() {
        #expect(EventFilter(cgroup: "/ci").matches(e))
        #expect(EventFilter(cgroup: "/ci/job-17").matches(e))
        #expect(EventFilter(cgroup: "/ci/").matches(e))
        #expect(EventFilter(cgroup: "/").matches(e))
        #expect(!EventFilter(cgroup: "/ci/job-1").matches(e), "a sibling with a common prefix is not a descendant")
        #expect(!EventFilter(cgroup: "/other").matches(e))
    }

    @Test func pidVerdictTypeAndSince() {
        #expect(EventFilter(pid: 4242).matches(e))
        #expect(!EventFilter(pid: 1).matches(e))
        #expect(EventFilter(verdict: .redirect).matches(e))
        #expect(!EventFilter(verdict: .deny).matches(e))
        #expect(!EventFilter(type: .close).matches(e))
        #expect(EventFilter(since: e.time.addingTimeInterval(-1)).matches(e))
        #expect(!EventFilter(since: e.time.addingTimeInterval(1)).matches(e))
    }

    @Test func sinceParsesDurationsAndTimes() {
        let now = Date(timeIntervalSince1970: 100_000)
        #expect(EventFilter.parseSince("90s", now: now) == now.addingTimeInterval(-90))
        #expect(EventFilter.parseSince("1h30m", now: now) == now.addingTimeInterval(-5400))
        #expect(EventFilter.parseSince("2d", now: now) == now.addingTimeInterval(-172_800))
        #expect(EventFilter.parseSince("2026-11-21T19:06:21Z", now: now) != nil)
        #expect(EventFilter.parseSince("15", now: now) == nil, "a bare number has no unit")
        #expect(EventFilter.parseDuration("1h30m") == 5400)
        #expect(EventFilter.parseDuration("2026-11-21T19:06:21Z") == nil, "a time is not a duration")
        #expect(EventFilter.parseSince("5 minutes", now: now) == nil)
        #expect(EventFilter.parseSince("", now: now) == nil)
    }
}
