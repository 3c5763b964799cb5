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
