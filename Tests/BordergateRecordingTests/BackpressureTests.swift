import BordergateAudit
import Foundation
import GRDB
import Testing
@testable import BordergateRecording

@Suite struct BackpressureTests {
    @Test func contentWaitingForTheDiskIsBounded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = SessionStore.path(stateDirectory: dir)
        let store = try SessionStore(path: path, logger: LogLines().logger)
        let recorder = StoreRecorder(store: store, maxPendingBytes: 100, sink: { _ in })
        // a disk that does not keep up: the writer queue is held until we let it go
        let gate = DispatchSemaphore(value: 0)
        store.pool.asyncWriteWithoutTransaction { _ in gate.wait() }
        let r = recorder.open(start("b-1"))
        r.append(exchange())
        #expect(recorder.pendingBytes > 100, "one entry passes when nothing waits")
        let before = Date()
        r.append(exchange("GET", "/second"))
        #expect(Date().timeIntervalSince(before) < 0.5, "append never waits for the disk")
        gate.signal()
        r.close(end())
        store.flush()
        #expect(recorder.pendingBytes == 0)
        let e = try SessionArchive(path: path).entries("b-1")
        #expect(e.count == 2)
        #expect(e[0].requestBody?.isEmpty == false && e[0].requestHeaders != nil && !e[0].truncated)
        #expect(e[1].requestBody == nil && e[1].requestHeaders == nil && e[1].truncated)
        #expect(e[1].note?.contains("fell behind") == true && e[1].status == 200 && e[1].target == "/second")
    }
}

@Suite struct WriteFailureTests {
    @Test func aFailedWriteIsLoggedOnceAndTheEventSaysTheRecordingIsIncomplete() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = LogLines()
        let store = try SessionStore(path: SessionStore.path(stateDirectory: dir), logger: log.logger)
        // the writer's connection refuses the second entry, as a full disk would
        try store.pool.writeWithoutTransaction { db in
            try db.execute(sql: """
                CREATE TEMP TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.seq = 2
                BEGIN SELECT RAISE(ABORT, 'disk says no'); END
                """)
        }
        let events = EventSink()
        record(StoreRecorder(store: store, sink: events.sink), start("f-1"), [exchange(), exchange(), exchange()])
        let e = try #require(events.all.first)
        #expect(events.all.count == 1)
        #expect(e.error?.hasPrefix("the recording is incomplete: cannot store an entry of session f-1") == true, "\(e.error ?? "nil")")
        #expect(e.error?.contains("disk says no") == true)
        #expect(e.session?.sha256.count == 64, "what was stored is still digested")
        #expect(log.errors.count == 1 && log.errors[0].contains("the rest of this session is not recorded"), "\(log.errors)")
        // one failed write undoes none before it, and what was queued behind it is not stored
        // (before, that depended on whether it was written in the failed write's batch)
        #expect(try SessionArchive(path: store.path).entries("f-1").map(\.seq) == [1], "one failed write undoes no other")
    }
}
