import BordergateAudit
import BordergateRecording
import Foundation
import GRDB
import Testing

@Suite struct SessionStoreTests {
    @Test func aSessionRoundTrips() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let events = EventSink()
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: events.sink)
        record(recorder, start("c-1"), [
            exchange(),
            exchange("GET", "/health", status: nil, request: "", response: [], masked: [:]),
            .sql(SQLStatement(text: "SELECT * FROM users WHERE id = $1", parameters: ["7", nil], rows: 1, outcome: "SELECT 1",
                              startedAt: t0.addingTimeInterval(0.5), finishedAt: t0.addingTimeInterval(0.6), masked: ["email": 1])),
        ])

        let archive = try SessionArchive(path: path)
        let s = try #require(try archive.session("c-1"))
        #expect(s.process.pid == 4242 && s.process.exe == "/usr/bin/curl" && s.process.cgroup == "/ci/job-1" && s.process.user == "ci")
        #expect(s.destination.host == "api.example.com" && s.destination.ip == "198.51.100.10" && s.destination.port == 80)
        #expect(s.policy == "eu-only" && s.protocol == "http" && s.content)
        #expect(s.entries == 3 && s.masked == 4)
        #expect(s.bytes == AuditEvent.Bytes(sent: 300, received: 900))
        #expect(s.ending == "closed by client")
        #expect(abs(s.startedAt.timeIntervalSince(t0)) < 1e-5)
        #expect(abs((s.duration ?? 0) - 1) < 1e-5)
        let entries = try archive.entries("c-1")
        #expect(entries.map(\.seq) == [1, 2, 3])
        let post = entries[0]
        #expect(post.kind == .http && post.method == "POST" && post.target == "/v1/users?q=1&x=a%20b" && post.status == 200)
        #expect(post.requestBody == Array("{\"email\":\"[email]\"}".utf8))
        #expect(post.responseBody == Array("{\"ok\":true}".utf8))
        #expect(post.requestHeaders?.first == RecordedHeader(name: "Host", value: "api.example.com"))
        #expect(post.masked == ["email": 2, "credit-card": 1])
        #expect(!post.truncated)
        #expect(post.respondedAt.map { abs($0.timeIntervalSince(t0) - 0.05) < 1e-5 } == true)
        #expect(entries[1].status == nil && entries[1].method == "GET")
        let sql = entries[2]
        #expect(sql.kind == .sql && sql.sqlText == "SELECT * FROM users WHERE id = $1" && sql.sqlRows == 1)
        #expect(sql.sqlParameters == ["7", nil] && sql.sqlOutcome == "SELECT 1")

        let event = try #require(events.all.first)
        #expect(events.all.count == 1)
        #expect(event.type == .session && event.connection == "c-1" && event.policy == "eu-only")
        #expect(event.process?.pid == 4242 && event.destination?.host == "api.example.com")
        #expect(event.session?.id == "c-1" && event.session?.entries == 3)
        #expect(event.session?.bytes == s.storedBytes && s.storedBytes > 0)
        #expect(event.error == nil)
    }

    @Test func aMetadataOnlySessionKeepsNoContent() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: { _ in })
        record(recorder, start("m-1", content: false), [
            exchange(),
            .sql(SQLStatement(text: "SELECT $1", parameters: ["secret"], outcome: "SELECT 1", startedAt: t0, finishedAt: t0)),
        ])
        let archive = try SessionArchive(path: path)
        let s = try #require(try archive.session("m-1"))
        #expect(!s.content && s.storedBytes == 0)
        let e = try archive.entries("m-1")
        #expect(e[0].method == "POST" && e[0].status == 200 && e[0].target == "/v1/users?q=1&x=a%20b")
        #expect(e[0].requestBodyBytes == 19 && e[0].responseBodyBytes == 11, "sizes are metadata")
        #expect(e[0].requestBody == nil && e[0].responseBody == nil)
        #expect(e[0].requestHeaders == nil && e[0].responseHeaders == nil)
        #expect(e[1].sqlParameters == nil && e[1].sqlText == "SELECT $1")
        // and no byte of a body is anywhere in the file
        let raw = try Data(contentsOf: URL(fileURLWithPath: path)) + ((try? Data(contentsOf: URL(fileURLWithPath: path + "-wal"))) ?? Data())
        #expect(raw.range(of: Data("[email]".utf8)) == nil)
        #expect(raw.range(of: Data("secret".utf8)) == nil)
    }

    @Test func theBodyCapTruncates() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), maxSessionBodyBytes: 10,
                                     sink: { _ in })
        record(recorder, start("t-1"), [
            exchange(request: "123456", response: Array("abcdefgh".utf8)),
            exchange(request: "xyz", response: []),
        ])
        let e = try SessionArchive(path: path).entries("t-1")
        #expect(e[0].requestBody == Array("123456".utf8))
        #expect(e[0].responseBody == Array("abcd".utf8), "what fits under the cap")
        #expect(e[0].truncated)
        #expect(e[0].responseBodyBytes == 8, "the wire size is kept")
        #expect(e[1].requestBody == [] && e[1].truncated)
        recorder.maxSessionBodyBytes = 100
        record(recorder, start("t-2"), [exchange(request: "123456", response: Array("abcdefgh".utf8))])
        let later = try SessionArchive(path: path).entries("t-2")
        #expect(later[0].responseBody == Array("abcdefgh".utf8) && !later[0].truncated, "a reload's cap applies to new sessions")
    }

    @Test func filesAreOnlyTheOwners() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        #expect(try SessionStore(path: path, logger: LogLines().logger).setAside == nil)
        var st = stat()
        #expect(stat(dir + "/recordings", &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        // freed pages can go back to the file system without a full VACUUM
        #expect(try DatabaseQueue(path: path).read { try Int.fetchOne($0, sql: "PRAGMA auto_vacuum") } == 2)
        #expect(try DatabaseQueue(path: path).read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
    }

    @Test func theEventsDigestMatchesARecomputation() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let events = EventSink()
        let store = try SessionStore(path: path, logger: LogLines().logger)
        let recorder = StoreRecorder(store: store, sink: events.sink)
        record(recorder, start("d-1"), [exchange(), exchange("GET", "/x", response: [0, 1, 2, 255])])
        record(recorder, start("d-2"), [exchange()])
        let sha = try #require(events.all.first { $0.connection == "d-1" }?.session?.sha256)
        #expect(sha.count == 64 && sha.allSatisfy(\.isHexDigit))
        let archive = try SessionArchive(path: path)
        #expect(try archive.digest(of: "d-1") == sha)
        #expect(try archive.session("d-1")?.sha256 == sha)
        #expect(try store.digest(of: "d-2") != sha, "another session, another digest")
        // one changed byte of a body changes it
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "UPDATE entries SET response_body = X'00010203' WHERE session_id = 'd-1' AND seq = 2")
        }
        #expect(try archive.digest(of: "d-1") != sha)
    }

    @Test func aSessionLeftOpenIsClosedByTheNextStore() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let first = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: { _ in })
        let open = first.open(start("o-1"))
        open.append(exchange())
        first.store.flush()
        let next = try SessionStore(path: path, logger: LogLines().logger)
        #expect(next.closeAbandoned() == 1)
        let s = try #require(try SessionArchive(path: path).session("o-1"))
        let digest = try next.digest(of: "o-1")
        #expect(s.ending == "incomplete" && s.endedAt != nil && s.sha256 == digest)
        #expect(next.closeAbandoned() == 0)
    }
}

extension SessionStoreTests {
    @Test func closeCountsOnceAndSinceKeepsOpenSessions() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let events = EventSink()
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: events.sink)
        let now = Date()
        let r = recorder.open(start("twice", at: now.addingTimeInterval(-7200)))
        r.close(end(at: now.addingTimeInterval(-3600 * 1.5)))
        r.close(end(at: now))
        r.append(exchange()) // after close: ignored
        let open = recorder.open(start("long-lived", at: now.addingTimeInterval(-2 * 86400)))
        open.append(exchange())
        recorder.store.flush()
        #expect(events.all.count == 1)
        let archive = try SessionArchive(path: path)
        let twice = try #require(try archive.session("twice"))
        #expect(twice.entries == 0 && abs((twice.duration ?? 0) - 1800) < 0.01, "the first close stands")
        let recent = try archive.list(SessionQuery(since: now.addingTimeInterval(-3600))).map(\.id)
        #expect(recent == ["long-lived"], "open since two days, active now; 'twice' ended before: \(recent)")
        open.close(end(at: now))
    }
}

@Suite struct CorruptStoreTests {
    @Test func aCorruptFileIsSetAsideAndANewStoreWorks() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        try FileManager.default.createDirectory(atPath: dir + "/recordings", withIntermediateDirectories: true)
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: path))
        let log = LogLines()
        let store = try SessionStore(path: path, logger: log.logger)
        let aside = try FileManager.default.contentsOfDirectory(atPath: dir + "/recordings")
            .filter { $0.hasPrefix("sessions.sqlite.corrupt-") }
        #expect(aside.count == 1)
        #expect(store.setAside == dir + "/recordings/" + (aside.first ?? "?"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/recordings/" + aside[0])) == garbage, "nothing recorded is deleted")
        #expect(log.errors.count == 1)
        let line = try #require(log.errors.first)
        #expect(line.contains(path) && line.contains(aside[0]) && line.contains("started a new one"), "\(line)")
        #expect(!line.contains("\n"))
        let events = EventSink()
        record(StoreRecorder(store: store, sink: events.sink), start("n-1"), [exchange()])
        #expect(try SessionArchive(path: path).session("n-1")?.entries == 1)
        #expect(events.all.first?.error == nil)
    }

    @Test func anUnreadableStoreIsOneClearError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // a file where the recordings directory should be
        _ = FileManager.default.createFile(atPath: dir + "/recordings", contents: Data("x".utf8))
        let path = SessionStore.path(stateDirectory: dir)
        #expect {
            _ = try SessionStore(path: path, logger: LogLines().logger)
        } throws: { error in
            let text = "\(error)"
            return error is StoreError && text.contains(path) && !text.contains("\n")
        }
        #expect(throws: StoreError.self) { _ = try SessionArchive(path: path) }
    }
}

@Suite struct RetentionTests {
    @Test func oldSessionsGoFirst() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try SessionStore(path: SessionStore.path(stateDirectory: dir), logger: LogLines().logger)
        let recorder = StoreRecorder(store: store, sink: { _ in })
        let now = Date()
        record(recorder, start("old", at: now.addingTimeInterval(-40 * 86400)), [exchange()])
        record(recorder, start("mid", at: now.addingTimeInterval(-20 * 86400)), [exchange()])
        record(recorder, start("new", at: now.addingTimeInterval(-60)), [exchange()])
        let report = try store.applyRetention(RetentionPolicy(retain: 30 * 86400, maxBytes: 1 << 30), now: now)
        #expect(report.expired == 1 && report.evictedForSize == 0)
        let archive = try SessionArchive(path: store.path)
        #expect(try archive.list().map(\.id) == ["mid", "new"])
        #expect(try archive.entries("old").isEmpty, "its entries went with it")
    }

    @Test func pastTheSizeTheOldestGoAndTheDiskIsFreed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try SessionStore(path: SessionStore.path(stateDirectory: dir), logger: LogLines().logger)
        let recorder = StoreRecorder(store: store, sink: { _ in })
        let now = Date()
        let body = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
        for i in 0..<16 {
            record(recorder, start(String(format: "s-%02d", i), at: now.addingTimeInterval(Double(i) - 100)),
                   [exchange(response: body)])
        }
        let open = recorder.open(start("still-open", at: now.addingTimeInterval(-200)))
        open.append(exchange(response: body))
        store.flush()
        _ = try store.applyRetention(RetentionPolicy(retain: 86400, maxBytes: 1 << 30), now: now) // settles the WAL
        let before = store.fileBytes()
        #expect(before > 16 * (256 << 10))
        let limit: UInt64 = 1 << 20
        let report = try store.applyRetention(RetentionPolicy(retain: 86400, maxBytes: limit), now: now)
        #expect(report.expired == 0 && report.evictedForSize >= 13)
        let left = try SessionArchive(path: store.path).list().map(\.id)
        let closed = left.filter { $0 != "still-open" }
        #expect(left.contains("still-open"), "an open session is never deleted")
        #expect(closed == (16 - closed.count..<16).map { String(format: "s-%02d", $0) }, "the newest are kept: \(left)")
        #expect(try store.usedBytes() <= limit)
        #expect(report.bytesAfter <= limit + (64 << 10), "the file shrank: \(report)")
        #expect(store.fileBytes() < before / 3)
        open.close(end())
    }
}

@Suite struct ExportTests {
    @Test func harHasTheRequiredStructure() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: { _ in })
        record(recorder, start("h-1"), [exchange(), exchange("GET", "/img", response: [0x89, 0x50, 0x4e, 0x47, 0, 1])])
        let archive = try SessionArchive(path: path)
        let data = try SessionExport.data(try archive.require("h-1"), entries: try archive.entries("h-1"), format: .har, version: "9.9.9")
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let log = try #require(root["log"] as? [String: Any])
        #expect(log["version"] as? String == "1.2")
        let creator = try #require(log["creator"] as? [String: Any])
        #expect(creator["name"] as? String == "bordergate" && creator["version"] as? String == "9.9.9")
        let entries = try #require(log["entries"] as? [[String: Any]])
        #expect(entries.count == 2)
        for e in entries {
            #expect(AuditTime.parse(try #require(e["startedDateTime"] as? String)) != nil)
            #expect(e["time"] is NSNumber)
            #expect(e["cache"] is [String: Any])
            let request = try #require(e["request"] as? [String: Any])
            for key in ["method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"] {
                #expect(request[key] != nil, "request.\(key)")
            }
            let response = try #require(e["response"] as? [String: Any])
            for key in ["status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"] {
                #expect(response[key] != nil, "response.\(key)")
            }
            let content = try #require(response["content"] as? [String: Any])
            #expect(content["size"] is NSNumber && content["mimeType"] is String)
            let timings = try #require(e["timings"] as? [String: Any])
            for key in ["send", "wait", "receive"] { #expect((timings[key] as? NSNumber).map { $0.doubleValue >= 0 } == true) }
        }
        let post = try #require(entries[0]["request"] as? [String: Any])
        #expect(post["method"] as? String == "POST")
        #expect(post["url"] as? String == "http://api.example.com/v1/users?q=1&x=a%20b")
        let query = try #require(post["queryString"] as? [[String: String]])
        #expect(query == [["name": "q", "value": "1"], ["name": "x", "value": "a b"]])
        let postData = try #require(post["postData"] as? [String: Any])
        #expect(postData["mimeType"] as? String == "application/json" && postData["text"] as? String == "{\"email\":\"[email]\"}")
        let ok = try #require(entries[0]["response"] as? [String: Any])
        #expect(ok["status"] as? Int == 200 && ok["statusText"] as? String == "OK")
        #expect((ok["content"] as? [String: Any])?["text"] as? String == "{\"ok\":true}")
        let timings = try #require(entries[0]["timings"] as? [String: Any])
        #expect(abs(((timings["wait"] as? NSNumber)?.doubleValue ?? 0) - 40) < 0.01)
        let binary = try #require((entries[1]["response"] as? [String: Any])?["content"] as? [String: Any])
        #expect(binary["encoding"] as? String == "base64")
        #expect(Data(base64Encoded: try #require(binary["text"] as? String)) == Data([0x89, 0x50, 0x4e, 0x47, 0, 1]))
    }

    @Test func jsonHasEveryEntry() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let recorder = StoreRecorder(store: try SessionStore(path: path, logger: LogLines().logger), sink: { _ in })
        record(recorder, start("j-1", protocol: .postgresql), [
            .sql(SQLStatement(text: "DELETE FROM t", outcome: "ERROR 42501: refused", guardrail: "no-delete", startedAt: t0, finishedAt: t0)),
        ])
        let archive = try SessionArchive(path: path)
        let data = try SessionExport.data(try archive.require("j-1"), entries: try archive.entries("j-1"), format: .json, version: "9.9.9")
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let session = try #require(root["session"] as? [String: Any])
        #expect(session["id"] as? String == "j-1" && session["protocol"] as? String == "postgresql")
        #expect((session["sha256"] as? String)?.count == 64)
        let entries = try #require(root["entries"] as? [[String: Any]])
        #expect(entries.count == 1 && entries[0]["guardrail"] as? String == "no-delete" && entries[0]["kind"] as? String == "sql")
        #expect(throws: StoreError.self) { _ = try archive.require("nope") }
    }
}
