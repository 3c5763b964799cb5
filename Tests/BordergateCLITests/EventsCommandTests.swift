import ArgumentParser
import BordergateAudit
import Foundation
import Testing
@testable import BordergateCLI

@Suite struct EventsCommandTests {
    static func connect(_ verdict: Verdict, host: String) -> AuditEvent {
        AuditEvent(type: .connect, verdict: verdict, reason: "because",
                   process: .init(pid: 7, ppid: 1, uid: 0, user: "root", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci/job"),
                   destination: .init(ip: "198.51.100.10", port: 443, host: host, region: "DE", country: "DE"), policy: "eu-only")
    }

    @Test func notBeforeAFilterOptionNegatesThatOptionOnly() throws {
        #expect(EventsCommand.negatedOptions(in: ["--not", "--verdict", "pass", "--host", "*.example"]) == ["verdict"])
        #expect(EventsCommand.negatedOptions(in: ["--host", "a", "--not", "--host=*.example", "--not", "--since", "1h"]) == ["host"])
        #expect(EventsCommand.negatedOptions(in: ["--not"]).isEmpty)
        let c = try EventsCommand.parse(["--verdict", "pass", "--host", "*.example", "--since", "1h"])
        let f = c.filter(negating: ["verdict"])
        #expect(f.verdict == nil && f.host == "*.example" && f.since != nil)
        #expect(f.not == [EventFilter(verdict: .pass)])
        #expect(!f.matches(Self.connect(.pass, host: "a.example")))
        #expect(f.matches(Self.connect(.deny, host: "a.example")))
        #expect(!f.matches(Self.connect(.deny, host: "a.other")))
        // what travels to the daemon keeps the negation
        let back = try JSONDecoder().decode(EventFilter.self, from: JSONEncoder().encode(f))
        #expect(back == f)
    }

    @Test func untilBoundsTheHistoryAndOutputFileTakesTheEvents() throws {
        let c = try EventsCommand.parse(["--until", "2026-12-04T22:00:01Z", "-o", "json"])
        let f = c.filter(negating: [])
        var early = Self.connect(.pass, host: "a.example")
        early.time = AuditTime.parse("2026-12-04T22:00:00Z")!
        var late = early
        late.time = AuditTime.parse("2026-12-04T22:00:02Z")!
        #expect(f.matches(early) && !f.matches(late))
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--until", "soon"]) }
        let path = NSTemporaryDirectory() + "bg-events-\(UUID().uuidString).jsonl"
        defer { unlink(path) }
        let sink = try EventsSink(format: .json, last: 1, file: path)
        sink.event(early, line: Data("one".utf8))
        sink.event(late, line: Data("two".utf8))
        sink.historyEnded()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two\n", "--last 1 of the history, to the file")
    }

    @Test func lastNeedsAPositiveNumberAndInputCannotBeFollowed() {
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--last", "0"]) }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--input", "x.jsonl", "-f"]) }
        #expect((try? EventsCommand.parse(["--last", "5", "-o", "table", "--input", "x.jsonl"])) != nil)
    }

    @Test func theTableHasFixedColumnsAndAHeader() {
        let header = EventTable.header
        #expect(header.hasPrefix("TIME ") && header.contains(" VERDICT ") && header.hasSuffix("REASON"))
        let row = EventTable.row(Self.connect(.deny, host: "a-very-long-hostname-that-does-not-fit.example.com"))
        #expect(row.hasSuffix(" because"))
        let policyAt = header.range(of: "POLICY")!.lowerBound.utf16Offset(in: header)
        #expect(row.dropFirst(policyAt).hasPrefix("eu-only"), "columns line up: \(row)")
        #expect(row.contains("…"), "a long cell is cut: \(row)")
    }
}
