@testable import BordergateFleet
import Foundation
import Testing

@Suite struct LogTailTests {
    func line(_ seq: Int, type: String = "connect") -> String {
        #"{"time":"2026-12-04T10:00:0\#(seq % 10).000000Z","id":"x\#(seq)","type":"\#(type)","verdict":"pass","seq":\#(seq),"chain":"ab"}"#
    }

    func dir() -> String {
        let d = NSTemporaryDirectory() + "bg-tail-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func linesAreReadFromThePositionInWholeLinesOnly() throws {
        let log = dir() + "/events.jsonl"
        try (line(1) + "\n" + line(2) + "\n" + #"{"time":"partial"#).write(toFile: log, atomically: true, encoding: .utf8)
        var tail = LogTail(logPath: log, position: LogPosition())
        let (lines, pos) = try tail.next(limit: 10)
        #expect(lines.map(\.seq) == [1, 2])
        #expect(lines[0].type == "connect" && lines[0].verdict == "pass" && lines[0].time == "2026-12-04T10:00:01.000000Z")
        #expect(lines[1].line == line(2), "the line exactly as logged")
        #expect(pos.seq == 2 && pos.offset == UInt64(line(1).utf8.count + line(2).utf8.count + 2))
        tail.position = pos
        #expect(try tail.next(limit: 10).lines.isEmpty, "half a line waits for the rest")
    }

    @Test func aRotatedFileIsFinishedBeforeTheNewOneByItsInode() throws {
        let d = dir()
        let log = d + "/events.jsonl"
        try (line(1) + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        var tail = LogTail(logPath: log, position: LogPosition())
        tail.position = try tail.next(limit: 1).position
        // more is written, then the file is rotated away and a new one started
        let h = try #require(FileHandle(forWritingAtPath: log))
        try h.seekToEnd()
        try h.write(contentsOf: Data((line(2) + "\n").utf8))
        try h.close()
        #expect(rename(log, d + "/events-2.jsonl") == 0)
        try (line(3) + "\n" + line(4) + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        var seqs: [Int64] = []
        for _ in 0..<4 {
            let (lines, pos) = try tail.next(limit: 10)
            seqs += lines.map(\.seq)
            tail.position = pos
        }
        #expect(seqs == [2, 3, 4])
    }

    @Test func whatWasShippedIsNotShippedAgainAfterTheFileIsReplaced() throws {
        let log = dir() + "/events.jsonl"
        try (line(1) + "\n" + line(2) + "\n").write(toFile: log, atomically: true, encoding: .utf8)
        var tail = LogTail(logPath: log, position: LogPosition())
        tail.position = try tail.next(limit: 10).position
        // the file is gone and another holds the same lines and more (restored from a copy)
        try (line(1) + "\n" + line(2) + "\n" + line(3) + "\n").write(toFile: log, atomically: true, encoding: .utf8)
        #expect(try tail.next(limit: 10).lines.map(\.seq) == [3])
    }

    @Test func linesWithoutASeqArePassedOverAndOddLayoutsStillParse() {
        #expect(LogTail.parse(Data(#"{"time":"t","type":"connect"}"#.utf8)) == nil)
        let reordered = LogTail.parse(Data(#"{"type":"close","seq":7,"time":"t"}"#.utf8))
        #expect(reordered?.seq == 7 && reordered?.type == "close" && reordered?.time == "t")
    }

    @Test func aLineTornByACrashAndJoinedToTheNextIsPassedOver() throws {
        let log = dir() + "/events.jsonl"
        let torn = #"{"time":"2026-12-04T10:00:01.0Z","id":"x1","type":"conn"# + line(2)
        try (torn + "\n" + line(3) + "\n").write(toFile: log, atomically: true, encoding: .utf8)
        let tail = LogTail(logPath: log, position: LogPosition())
        #expect(try tail.next(limit: 10).lines.map(\.seq) == [3])
    }

    @Test func urlsAndTablesAreChecked() {
        #expect(FleetTarget.problem(url: "postgresql://u@h/db", table: "bordergate_events") == nil)
        #expect(FleetTarget.problem(url: "mysql://u@h/db", table: "t")?.contains("not a PostgreSQL URL") == true)
        #expect(FleetTarget.problem(url: "postgresql://u@h/db", table: "t; drop table x")?.contains("not a plain SQL name") == true)
        #expect(FleetTarget.redacted("postgresql://u:secret@h/db") == "postgresql://u:***@h/db")
        #expect(!FleetTarget.redacted("postgresql://u:se cret%@h/db").contains("se cret"))
        #expect(FleetTarget(url: "postgresql://u@h/db", table: "x; drop").table == FleetTarget.defaultTable)
    }
}
