import Crypto
import Foundation
import Testing
@testable import BordergateAudit

private func tempDir() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bg-evidence-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: dir + "/audit", withIntermediateDirectories: true)
    return dir + "/audit"
}

private func event(_ i: Int, time: Date = Date()) -> AuditEvent {
    AuditEvent(time: time, id: "e\(i)", type: .connect, verdict: .pass, reason: "allow[0]: \"quoted\" \\ \(i)",
               process: .init(pid: 100 + i, ppid: 1, uid: 0, user: "root", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci"),
               destination: .init(ip: "198.51.100.\(i % 250)", port: 443, host: "h\(i).example", region: "aws:eu-west-1",
                                  country: "DE", jurisdictions: ["EU", "EEA"]),
               protocol: .tls, policy: "eu-only", rule: "allow[0]", connection: "c\(i)")
}

/// Writes `count` events through the log's chained path in batches of `batch`.
@discardableResult
private func writeLog(_ dir: String, count: Int, batch: Int = 7, every: Int = 10, start: Int = 0,
                      times: (Int) -> Date = { _ in Date() }) throws -> AuditLog {
    let log = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: every, checkpointInterval: .seconds(3600))
    var block: [UInt8] = []
    var lines: [Range<Int>] = []
    var i = start
    while i < start + count {
        let n = min(batch, start + count - i)
        try log.appendEvents((i..<(i + n)).map { event($0, time: times($0)) }, into: &block, lines: &lines)
        i += n
    }
    return log
}

private func lines(_ path: String) -> [String] {
    (try! String(contentsOfFile: path, encoding: .utf8)).split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
}

private func save(_ lines: [String], _ path: String) {
    try! (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

/// Recomputes the chain values from line `from` on, as anyone without the key could.
private func rechain(_ lines: inout [String], from: Int) {
    var prev = from == 0 ? Chain.Value.genesis : Chain.seal(of: Array(lines[from - 1].utf8))!.chain
    for i in from..<lines.count {
        let bytes = Array(lines[i].utf8)
        let s = Chain.seal(of: bytes)!
        var fixed = Array(bytes[0..<s.bodyEnd])
        prev = fixed.withUnsafeBytes { Chain.link(previous: prev, body: $0) }
        fixed.append(contentsOf: Chain.chainKey)
        prev.appendHex(to: &fixed)
        fixed.append(contentsOf: Array("\"}".utf8))
        lines[i] = String(decoding: fixed, as: UTF8.self)
    }
}

private func verify(_ dir: String, maxUnsigned: Int = 1000) throws -> LogVerifier.Report {
    try Evidence.verify(files: [dir + "/events.jsonl"], key: nil, stateLogDirectory: dir)
}

private func sha256sum(_ data: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "/bg-sha-\(UUID().uuidString)"
    try Data(data).write(to: URL(fileURLWithPath: path))
    defer { unlink(path) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return String(text.prefix(64))
}

@Suite struct ChainTests {
    @Test func aLineIsTheEventsJSONWithSeqAndChainLastAndTheChainIsSHA256OfThePreviousAndTheCanonicalBytes() throws {
        let dir = tempDir()
        try writeLog(dir, count: 2, batch: 2, every: 1000)
        let ls = lines(dir + "/events.jsonl")
        #expect(ls.count == 2)
        // the existing fields byte for byte as before, then seq, then chain
        let plain = String(decoding: event(0).jsonLine(), as: UTF8.self)
        let first = ls[0]
        let t = first.range(of: "\"id\"")!.lowerBound
        #expect(first[t...].hasPrefix(plain[plain.range(of: "\"id\"")!.lowerBound...].dropLast()))
        #expect(first.contains(#","seq":1,"chain":""#))
        let canonical1 = Array(first.utf8.prefix(first.utf8.count - Chain.suffixLength)) + [UInt8(ascii: "}")]
        #expect(String(decoding: canonical1, as: UTF8.self).hasSuffix(#","seq":1}"#))
        let chain1 = try sha256sum([UInt8](repeating: 0, count: 32) + canonical1)
        #expect(first.hasSuffix(#","chain":"\#(chain1)"}"#))
        let second = ls[1]
        let canonical2 = Array(second.utf8.prefix(second.utf8.count - Chain.suffixLength)) + [UInt8(ascii: "}")]
        let chain2 = try sha256sum(Array(Chain.Value(hex: chain1)!.withBytes { Array($0) }) + canonical2)
        #expect(second.hasSuffix(#","seq":2,"chain":"\#(chain2)"}"#))
        // readers still decode the line, and see seq and chain
        let e = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(first.utf8))
        #expect(e.seq == 1 && e.chain == chain1 && e.reason == event(0).reason)
    }

    @Test func sealsAreReadOnlyFromAWholeChainedLine() {
        #expect(Chain.seal(of: Array(#"{"a":1}"#.utf8)) == nil)
        #expect(Chain.seal(of: Array((#"{"a":1,"seq":x,"chain":""# + String(repeating: "0", count: 64) + #""}"#).utf8)) == nil)
        #expect(Chain.seal(of: Array((#"{"a":1,"seq":7,"chain":""# + String(repeating: "0", count: 63) + #""}"#).utf8)) == nil)
        let ok = #"{"a":1,"seq":42,"chain":""# + String(repeating: "ab", count: 32) + #""}"#
        let s = Chain.seal(of: Array(ok.utf8))
        #expect(s?.seq == 42 && s?.chain.hex == String(repeating: "ab", count: 32))
    }

    @Test func theChainContinuesAcrossReopeningAndPastATornLine() throws {
        let dir = tempDir()
        try writeLog(dir, count: 15)
        // a crash mid-write leaves half a line
        let h = FileHandle(forWritingAtPath: dir + "/events.jsonl")!
        h.seekToEndOfFile()
        h.write(Data(#"{"time":"2026-01-01T00:00:00.000000Z","id":"torn","ty"#.utf8))
        try h.close()
        try writeLog(dir, count: 15, start: 15)
        let r = try verify(dir)
        #expect(r.ok, "\(r.problems)")
        #expect(r.events == 30)
        #expect(r.notes.contains { $0.contains("torn") })
        var seqs: [UInt64] = []
        for l in lines(dir + "/events.jsonl") { if let s = Chain.seal(of: Array(l.utf8)) { seqs.append(s.seq) } }
        #expect(seqs == Array(1...UInt64(seqs.count)))
    }

    @Test func aCheckpointEveryNEventsSignedAndRecordedBesideTheLog() throws {
        let dir = tempDir()
        let log = try writeLog(dir, count: 35, every: 10)
        let ls = lines(dir + "/events.jsonl")
        let cps = ls.filter { $0.contains(#""type":"checkpoint""#) }
        #expect(cps.count == 3)
        #expect(ls.count == 38)
        #expect(cps.allSatisfy { $0.contains(#""key":"\#(log.publicKey)""#) })
        let head = try String(contentsOfFile: log.headPath, encoding: .utf8)
        #expect(head == cps.last! + "\n")
        // readers of events do not see checkpoints
        var n = 0
        _ = try AuditLog.read(path: log.path) { _, _ in n += 1 }
        #expect(n == 35)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/signing.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try Evidence.publicKey(logDirectory: dir) == log.publicKey)
        let r = try verify(dir)
        #expect(r.ok && r.checkpoints == 3 && r.events == 35, "\(r.problems)")
        #expect(r.notes.contains { $0.contains("not signed yet") })
    }

    @Test func aCheckpointAfterTheIntervalAndWhenTheHubStops() throws {
        let dir = tempDir()
        let log = try AuditLog(path: dir + "/events.jsonl", syncInterval: .milliseconds(20), checkpointInterval: .milliseconds(50))
        let hub = AuditHub(log: log)
        hub.publish(event(1))
        hub.flush()
        var cps = 0
        for _ in 0..<250 where cps == 0 {
            usleep(20_000)
            cps = lines(log.path).filter { $0.contains(#""type":"checkpoint""#) }.count
        }
        #expect(cps == 1)
        hub.publish(event(2))
        hub.shutdown()
        let ls = lines(log.path)
        #expect(ls.count == 4 && ls.last!.contains(#""type":"checkpoint""#))
        let r = try verify(dir)
        #expect(r.ok && r.notes.isEmpty, "\(r.problems) \(r.notes)")
    }

    @Test func twoWritersOfOneFileKeepOneChain() throws {
        let dir = tempDir()
        let a = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 5)
        let b = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 5)
        var block: [UInt8] = []
        var ls: [Range<Int>] = []
        for i in 0..<20 {
            try (i % 3 == 0 ? a : b).appendEvents([event(i), event(i + 100)], into: &block, lines: &ls)
        }
        let r = try verify(dir)
        #expect(r.ok && r.events == 40, "\(r.problems)")
    }

    /// Two writers taking turns, each with fewer than N events of its own since a checkpoint,
    /// must not leave a run of more than N unsigned events between them.
    @Test func twoWritersNeverLeaveMoreThanNUnsignedInARow() throws {
        let dir = tempDir()
        let a = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 10, checkpointInterval: .seconds(3600))
        let b = try AuditLog(path: dir + "/events.jsonl", checkpointEvery: 10, checkpointInterval: .seconds(3600))
        var block: [UInt8] = []
        var ls: [Range<Int>] = []
        for i in 0..<9 { try a.appendEvents([event(i)], into: &block, lines: &ls) }
        for i in 9..<18 { try b.appendEvents([event(i)], into: &block, lines: &ls) }
        var run = 0, longest = 0
        for line in lines(dir + "/events.jsonl") {
            run = line.contains("\"type\":\"checkpoint\"") ? 0 : run + 1
            longest = max(longest, run)
        }
        #expect(longest <= 10, "a run of \(longest) unsigned events")
        #expect(try verify(dir).ok)
    }

    /// A writer whose log lost lines it wrote (cut short behind its back) goes on from its own
    /// chain, so verify finds the cut; starting a new chain at seq 1 would hide it.
    @Test func aWriterWhoseLogWasCutShortGoesOnFromItsOwnChain() throws {
        let dir = tempDir()
        let log = try writeLog(dir, count: 30, every: 10)
        let path = dir + "/events.jsonl"
        // cut in place (the writer's descriptor stays on the file), after its 5th line
        let keptBytes = lines(path).prefix(5).reduce(0) { $0 + $1.utf8.count + 1 }
        #expect(truncate(path, off_t(keptBytes)) == 0)
        var block: [UInt8] = []
        var ls: [Range<Int>] = []
        try log.appendEvents([event(99)], into: &block, lines: &ls)
        let after = lines(path)
        let seq = try #require(Chain.seal(of: Array(after.last!.utf8))?.seq)
        #expect(seq > 30, "the writer started over at seq \(seq)")
        let r = try verify(dir)
        #expect(!r.ok, "a log cut from 33 lines to 5 verified")
    }
}

@Suite struct TamperingTests {
    /// A log of 50 events with a checkpoint after every 10 (lines 11, 22, 33, 44, 55), 55 lines.
    private func fixture() throws -> (dir: String, lines: [String]) {
        let dir = tempDir()
        try writeLog(dir, count: 50, every: 10)
        let ls = lines(dir + "/events.jsonl")
        #expect(ls.count == 55)
        #expect(try verify(dir).ok)
        return (dir, ls)
    }

    private func expectProblem(_ dir: String, _ kind: LogVerifier.Finding.Kind, line: Int? = nil, file: String? = nil) throws {
        let r = try verify(dir)
        let first = try #require(r.problems.first, "tampering not detected")
        #expect(first.kind == kind, "\(r.problems)")
        if let line { #expect(first.line == line, "\(r.problems)") }
        #expect(first.file.hasSuffix(file ?? "events.jsonl"), "\(r.problems)")
    }

    @Test func anEditedEvent() throws {
        var (dir, ls) = try fixture()
        ls[4] = ls[4].replacingOccurrences(of: #""verdict":"pass""#, with: #""verdict":"deny""#)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .edited, line: 5)
        #expect(try verify(dir).problems.count == 1)
    }

    @Test func anEditedEventReChainedToTheNextCheckpoint() throws {
        var (dir, ls) = try fixture()
        ls[4] = ls[4].replacingOccurrences(of: #""verdict":"pass""#, with: #""verdict":"deny""#)
        rechain(&ls, from: 4)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .rechained, line: 11)
    }

    @Test func aDeletedEvent() throws {
        var (dir, ls) = try fixture()
        ls.remove(at: 4)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .deleted, line: 5)
        #expect(try verify(dir).problems.first!.message.contains("seq 5 is missing"))
    }

    @Test func theFirstEventsDeleted() throws {
        var (dir, ls) = try fixture()
        ls.removeFirst(3)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .deleted, line: 1)
    }

    @Test func reorderedLines() throws {
        var (dir, ls) = try fixture()
        ls.swapAt(4, 6)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .reordered, line: 5)
        #expect(try verify(dir).problems.first!.message.contains("seq 5 is at line 7"))
    }

    @Test func aTruncatedTailBeyondTheLastCheckpoint() throws {
        var (dir, ls) = try fixture()
        ls.removeLast(20)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .truncated, line: 35)
    }

    @Test func aTailCutMidLine() throws {
        let (dir, ls) = try fixture()
        var text = ls.joined(separator: "\n")
        text.removeLast(30)
        try text.write(toFile: dir + "/events.jsonl", atomically: true, encoding: .utf8)
        try expectProblem(dir, .truncated)
    }

    @Test func theRecordOfTheLastCheckpointRemovedWithTheTail() throws {
        var (dir, ls) = try fixture()
        ls.removeLast(20)
        save(ls, dir + "/events.jsonl")
        unlink(dir + "/checkpoint.json")
        try expectProblem(dir, .truncated, file: "checkpoint.json")
    }

    @Test func aForgedCheckpoint() throws {
        var (dir, ls) = try fixture()
        // a checkpoint over the same chain, signed with another key
        let other = try SigningKey.loadOrCreate(directory: tempDir())
        let before = Chain.seal(of: Array(ls[20].utf8))!
        var block: [UInt8] = []
        try Checkpoint.appendJSON(signing: before.seq, chain: before.chain, key: other,
                                  publicKey: SigningKey.format(other.publicKey), to: &block)
        _ = Chain.seal(&block, from: 0, seq: before.seq + 1, previous: before.chain)
        ls[21] = String(decoding: block, as: UTF8.self)
        rechain(&ls, from: 22)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .forgedCheckpoint, line: 22)
    }

    @Test func aCheckpointWithAnAlteredSignature() throws {
        var (dir, ls) = try fixture()
        let sig = ls[10].range(of: #""signature":""#)!.upperBound
        let c = ls[10][sig]
        ls[10].replaceSubrange(sig...sig, with: c == "A" ? "B" : "A")
        rechain(&ls, from: 10)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .forgedCheckpoint, line: 11)
    }

    @Test func anInsertedUnchainedEvent() throws {
        var (dir, ls) = try fixture()
        ls.insert(String(decoding: event(999).jsonLine(), as: UTF8.self), at: 7)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .unchained, line: 8)
    }

    @Test func eventsPutAheadOfTheChainFailTheVerification() throws {
        var (dir, ls) = try fixture()
        ls.insert(String(decoding: event(998).jsonLine(), as: UTF8.self), at: 0)
        ls.insert(String(decoding: event(999).jsonLine(), as: UTF8.self), at: 0)
        save(ls, dir + "/events.jsonl")
        try expectProblem(dir, .unchained, line: 1)
        #expect(try verify(dir).problems.first?.message.hasPrefix("2 line(s) ahead of the chain's first line") == true)
    }

    @Test func checkpointsRemovedLeaveTooLongAnUnsignedTail() throws {
        let dir = tempDir()
        try writeLog(dir, count: 30, every: 1000)
        var v = LogVerifier(key: try SigningKey.parsePublic(Evidence.publicKey(logDirectory: dir)))
        v.maxUnsigned = 10
        v.verify(file: dir + "/events.jsonl")
        let r = v.finish()
        #expect(r.problems.first?.kind == .unsignedTail)
    }

    @Test func theWrongKey() throws {
        let (dir, _) = try fixture()
        let other = try Evidence.publicKey(logDirectory: { let d = tempDir(); _ = try? SigningKey.loadOrCreate(directory: d); return d }())
        let r = try Evidence.verify(files: [dir + "/events.jsonl"], key: other, stateLogDirectory: dir)
        #expect(r.problems.first?.kind == .forgedCheckpoint)
    }
}

@Suite struct BundleTests {
    @Test func aPeriodExportedVerifiesElsewhereAndTamperingWithItDoesNot() throws {
        let dir = tempDir()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        try writeLog(dir, count: 60, every: 10, times: { t0.addingTimeInterval(Double($0)) })
        let out = NSTemporaryDirectory() + "/bg-bundle-\(UUID().uuidString).tar.gz"
        let m = try Evidence.export(logPath: dir + "/events.jsonl", since: t0.addingTimeInterval(15),
                                    until: t0.addingTimeInterval(34), to: out)
        #expect(m.events == 20)
        // seq: events 15...34 are seq 17...38 (a checkpoint after every 10); the next checkpoint is seq 44
        #expect(m.first_seq == 17 && m.last_seq == 44 && m.anchor_seq == 16)
        let key = try Evidence.publicKey(logDirectory: dir)
        // moved: the log and its key are gone
        try FileManager.default.removeItem(atPath: dir)
        let moved = NSTemporaryDirectory() + "/bg-moved-\(UUID().uuidString).tar.gz"
        try FileManager.default.moveItem(atPath: out, toPath: moved)
        let ok = try Evidence.verify(bundle: moved, key: key)
        #expect(ok.report.ok && ok.report.events == 25 && !ok.keyFromBundle, "\(ok.report.problems)")
        // an edited event inside the bundle
        let work = NSTemporaryDirectory() + "/bg-unpacked-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try EvidenceBundle.tar(["-xzf", moved, "-C", work])
        var ls = lines(work + "/bordergate-evidence/events.jsonl")
        ls[3] = ls[3].replacingOccurrences(of: "\"curl\"", with: "\"wget\"")
        save(ls, work + "/bordergate-evidence/events.jsonl")
        let bad = work + "/bad.tar.gz"
        try EvidenceBundle.tar(["-czf", bad, "-C", work, "bordergate-evidence"])
        let r = try Evidence.verify(bundle: bad, key: key)
        #expect(r.report.problems.first?.kind == .edited && r.report.problems.first?.line == 4, "\(r.report.problems)")
    }
}

@Suite struct ChainCostTests {
    /// A micro benchmark run with the suite: it prints what chaining costs per event next to the
    /// encoding the writer did before (asserting only that both produced the same events).
    @Test func chainingCostsLittleNextToEncoding() throws {
        let events = (0..<2000).map { event($0) }
        var block: [UInt8] = []
        block.reserveCapacity(1 << 20)
        let rounds = 10
        let clock = ContinuousClock()
        var plainBytes = 0
        let plain = clock.measure {
            for _ in 0..<rounds {
                block.removeAll(keepingCapacity: true)
                for e in events { e.appendJSON(to: &block); block.append(10) }
                plainBytes = block.count
            }
        }
        var chainedLines = 0
        var prev = Chain.Value.genesis
        var seq: UInt64 = 0
        let chained = clock.measure {
            for _ in 0..<rounds {
                block.removeAll(keepingCapacity: true)
                chainedLines = 0
                for e in events {
                    let start = block.count
                    e.appendJSON(to: &block)
                    seq += 1
                    prev = Chain.seal(&block, from: start, seq: seq, previous: prev)
                    block.append(10)
                    chainedLines += 1
                }
            }
        }
        let n = Double(events.count * rounds)
        func us(_ d: Duration) -> Double { Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12 }
        print("chain cost: encode \(String(format: "%.2f", us(plain) / n)) us/event (\(plainBytes / events.count) B), encode+chain \(String(format: "%.2f", us(chained) / n)) us/event: x\(String(format: "%.3f", us(chained) / us(plain)))")
        #expect(chainedLines == events.count && plainBytes > 0)
    }
}
