import Foundation
import Testing
@testable import BordergateAudit

private func logDir() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bg-rotation-\(UUID().uuidString)/audit").path
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func connect(_ i: Int) -> AuditEvent {
    AuditEvent(id: "r\(i)", type: .connect, verdict: .pass, reason: "allow[0]",
               destination: .init(ip: "198.51.100.\(i % 250)", port: 443), policy: "eu-only", connection: "c\(i)")
}

/// Appends `count` events in batches of `batch`.
private func append(_ log: AuditLog, _ range: Range<Int>, batch: Int = 5) throws {
    var block: [UInt8] = []
    var lines: [Range<Int>] = []
    var i = range.lowerBound
    while i < range.upperBound {
        let n = min(batch, range.upperBound - i)
        try log.appendEvents((i..<(i + n)).map(connect), into: &block, lines: &lines)
        i += n
    }
}

private func lines(_ path: String) -> [String] {
    (try! String(contentsOfFile: path, encoding: .utf8)).split(separator: "\n").map(String.init)
}

private func verify(_ files: [String], dir: String) throws -> LogVerifier.Report {
    try Evidence.verify(files: files, key: nil, stateLogDirectory: dir)
}

@Suite struct RotationTests {
    @Test func pastTheSizeTheNextBatchGoesToANewFileThatSignsAndNamesTheLastLineOfTheOldOne() throws {
        let dir = logDir()
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        log.setRotation(.init(bytes: 4096))
        try append(log, 0..<100)
        let files = AuditLog.chainFiles(logPath: log.path)
        #expect(files.count >= 4, "\(files)")
        #expect(files.last == log.path)
        // every rotated file but the newest holds at least the size, and the boundary is a batch:
        // a batch never spans two files
        for (older, newer) in zip(files, files.dropFirst()) {
            let last = lines(older).last!
            let first = lines(newer).first!
            let lastSeal = Chain.seal(of: Array(last.utf8))!
            let firstSeal = Chain.seal(of: Array(first.utf8))!
            #expect(firstSeal.seq == lastSeal.seq + 1, "the chain runs on: \(older) → \(newer)")
            #expect(first.contains(#""type":"checkpoint""#))
            #expect(first.contains(#""signs":{"seq":\#(lastSeal.seq),"chain":"\#(lastSeal.chain.hex)"}"#), "\(first)")
            #expect(first.contains(#""continues":"\#((older as NSString).lastPathComponent)""#), "\(first)")
            #expect(older.hasSuffix(String(format: "events-%012llu.jsonl", lastSeal.seq)), "named by its last seq: \(older)")
            #expect((try FileManager.default.attributesOfItem(atPath: older)[.size] as! UInt64) >= 4096)
        }
        let all = try verify(files, dir: dir)
        #expect(all.ok, "\(all.problems)")
        #expect(all.events == 100)
    }

    @Test func wordsATaskPutInAnEventAreNoRetentionRecord() throws {
        let dir = logDir()
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        log.setRotation(.init(bytes: 4096))
        try append(log, 0..<100)
        let files = AuditLog.chainFiles(logPath: log.path)
        try #require(files.count >= 3)
        let first = (files[0] as NSString).lastPathComponent
        // a tool's executable path carrying the retention record's words and the file's name
        var forged = AuditEvent(type: .connect, verdict: .pass, reason: "allow")
        forged.process = .init(pid: 1, ppid: 0, uid: 1000, user: nil, comm: "x",
                               exe: "/tmp/audit log retention removed 1 file(s) last written more than 1d ago: \(first); the oldest file kept", cgroup: "/ci")
        var block: [UInt8] = []
        var ranges: [Range<Int>] = []
        try log.appendEvents([forged], into: &block, lines: &ranges)
        let r = try verify(Array(AuditLog.chainFiles(logPath: log.path).dropFirst()), dir: dir)
        #expect(r.problems.first?.kind == .deleted, "the removed first file went unnoticed: \(r.problems)")
    }

    @Test func aReopenedLogContinuesTheChainOfTheRotatedFileWhenTheNewOneIsEmpty() throws {
        let dir = logDir()
        do {
            let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 1000, checkpointInterval: .seconds(3600))
            log.setRotation(.init(bytes: 4096))
            try append(log, 0..<60)
        }
        // as after a rotation whose first write never happened
        let rotated = AuditLog.rotatedFiles(directory: dir)
        let last = try #require(rotated.last)
        try FileManager.default.moveItem(atPath: dir + "/events.jsonl", toPath: dir + "/gone.jsonl")
        try FileManager.default.removeItem(atPath: dir + "/gone.jsonl")
        try FileManager.default.removeItem(atPath: dir + "/checkpoint.json")
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 1000, checkpointInterval: .seconds(3600))
        try append(log, 60..<62)
        let seal = Chain.seal(of: Array(lines(dir + "/" + last).last!.utf8))!
        #expect(Chain.seal(of: Array(lines(log.path).first!.utf8))!.seq == seal.seq + 1)
    }

    @Test func aRemovedMiddleFileIsNamedAndAVerifierGivenOnlyTheLaterFilesStartsFromTheSignedAnchor() throws {
        let dir = logDir()
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        log.setRotation(.init(bytes: 4096))
        try append(log, 0..<100)
        let files = AuditLog.chainFiles(logPath: log.path)
        try #require(files.count >= 4)
        var gapped = files
        let middle = gapped.remove(at: 1)
        let r = try verify(gapped, dir: dir)
        #expect(!r.ok)
        let first = try #require(r.problems.first)
        #expect(first.kind == .deleted && first.file == gapped[1] && first.line == 1, "\(r.problems)")
        // the first files gone without a retention event saying so: named as deleted
        let later = Array(files.dropFirst(2))
        let cut = try verify(later, dir: dir)
        #expect(cut.problems.map(\.kind) == [.deleted], "\(cut.problems)")
        #expect(cut.problems.first?.message.contains((middle as NSString).lastPathComponent) == true, "\(cut.problems)")
    }

    @Test func retentionRemovesWholeOldFilesOnlyAndRecordsWhichInAChainedEvent() throws {
        let dir = logDir()
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        log.setRotation(.init(bytes: 4096, retain: 86400))
        try append(log, 0..<60)
        let before = AuditLog.rotatedFiles(directory: dir)
        try #require(before.count >= 2)
        // the first two are old now
        let old = Date().addingTimeInterval(-2 * 86400)
        for f in before.prefix(2) {
            try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: dir + "/" + f)
        }
        try append(log, 60..<120) // rotates again, and retention runs
        let after = AuditLog.rotatedFiles(directory: dir)
        #expect(!after.contains(before[0]) && !after.contains(before[1]))
        #expect(after.contains(before[2...]), "younger files stay")
        let text = AuditLog.chainFiles(logPath: log.path).flatMap(lines).joined(separator: "\n")
        #expect(text.contains("audit log retention removed 2 file(s) last written more than 1d ago: \(before[0]), \(before[1])"))
        // what is left verifies: it starts from the signed anchor, and the removal is on record
        let r = try verify(AuditLog.chainFiles(logPath: log.path), dir: dir)
        #expect(r.ok, "\(r.problems)")
        #expect(r.notes.contains { $0.contains("after \(before[1])") }, "\(r.notes)")
    }

    @Test func retentionBetweenRotationsRemovesOldFilesAndTheRestStillVerifies() throws {
        let dir = logDir()
        let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        log.setRotation(.init(bytes: 4096, retain: 3600))
        try append(log, 0..<60)
        #expect(try log.applyRetention().isEmpty, "nothing is old yet")
        let files = AuditLog.rotatedFiles(directory: dir)
        try #require(files.count >= 2)
        for f in files {
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: dir + "/" + f)
        }
        #expect(try log.applyRetention() == files)
        #expect(AuditLog.rotatedFiles(directory: dir).isEmpty)
        try append(log, 60..<62)
        let r = try verify(AuditLog.chainFiles(logPath: log.path), dir: dir)
        #expect(r.ok, "\(r.problems)")
    }

    @Test func aSecondWriterFollowsTheRotationAndKeepsOneChain() throws {
        let dir = logDir()
        let a = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        let b = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 50, checkpointInterval: .seconds(3600))
        a.setRotation(.init(bytes: 4096))
        for round in 0..<20 {
            try append(a, (round * 10)..<(round * 10 + 5))
            try append(b, (round * 10 + 5)..<(round * 10 + 10))
        }
        let files = AuditLog.chainFiles(logPath: a.path)
        #expect(files.count >= 4)
        let r = try verify(files, dir: dir)
        #expect(r.ok, "\(r.problems)")
        #expect(r.events == 200)
    }
}
