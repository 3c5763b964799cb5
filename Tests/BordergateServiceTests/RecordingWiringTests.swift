import BordergateAudit
import BordergatePolicy
import BordergateRecording
import Foundation
import Logging
import Testing
@testable import BordergateService

/// The interceptor's recording: the store in the state directory, its session events in the
/// audit log, and recording off (not the daemon) when the store cannot be opened.
@Suite struct RecordingWiringTests {
    static func stateDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "bg-wiring-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func events(_ settings: Settings) throws -> [AuditEvent] {
        var out: [AuditEvent] = []
        _ = try AuditLog.read(path: settings.auditLogPath) { e, _ in out.append(e) }
        return out
    }

    @Test func theStoreIsInTheStateDirectoryAndItsEventsReachTheLog() throws {
        let dir = try Self.stateDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = Settings(stateDirectory: dir, environment: [:])
        #expect(settings.recordingsPath == dir + "/recordings/sessions.sqlite")
        let hub = AuditHub(log: try AuditLog(path: settings.auditLogPath))
        let (store, recorder) = Interceptor.openRecording(settings: settings, config: RecordingConfig(maxSessionBodyBytes: 4),
                                                          owner: true, hub: hub, logger: Logger(label: "test"))
        let s = try #require(store)
        #expect(s.path == settings.recordingsPath)
        #expect((recorder as? StoreRecorder)?.maxSessionBodyBytes == 4, "the config's cap")
        let process = AuditEvent.Process(pid: 7, ppid: 1, uid: 0, user: "root", comm: "curl", exe: "/usr/bin/curl", cgroup: "/x")
        let r = recorder.open(SessionStart(id: "conn-1", startedAt: Date(), process: process,
                                           destination: .init(ip: "198.51.100.10", port: 80), policy: "p", protocol: .http,
                                           content: true))
        r.append(.http(HTTPExchange(method: "GET", target: "/", status: 200, responseBody: Array("hello".utf8),
                                    responseBodyBytes: 5, startedAt: Date(), finishedAt: Date())))
        r.close(SessionEnd(endedAt: Date(), bytes: .init(sent: 1, received: 2), ending: .closedBy(.server)))
        s.flush()
        hub.flush()
        hub.shutdown()
        let session = try #require(try Self.events(settings).first { $0.type == .session })
        #expect(session.connection == "conn-1" && session.session?.entries == 1)
        #expect(session.session?.sha256 == (try s.digest(of: "conn-1")))
        let kept = try SessionArchive(path: settings.recordingsPath).entries("conn-1").first?.responseBody
        #expect(kept == Array("hell".utf8))
    }

    @Test func anUnusableStoreTurnsRecordingOffAndSaysSo() throws {
        let dir = try Self.stateDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = Settings(stateDirectory: dir, environment: [:])
        _ = FileManager.default.createFile(atPath: dir + "/recordings", contents: Data("in the way".utf8))
        let hub = AuditHub(log: try AuditLog(path: settings.auditLogPath))
        let (store, recorder) = Interceptor.openRecording(settings: settings, config: RecordingConfig(), owner: true, hub: hub,
                                                          logger: Logger(label: "test"))
        #expect(store == nil)
        #expect(recorder is DiscardingRecorder)
        hub.flush()
        hub.shutdown()
        let error = try #require(try Self.events(settings).first { $0.type == .daemon }?.error)
        #expect(error.hasPrefix("recording is off: ") && error.contains(settings.recordingsPath), "\(error)")
    }

    @Test func retentionIsWrittenAsTheConfigWritesIt() {
        #expect(Interceptor.durationText(30 * 86400) == "30d")
        #expect(Interceptor.durationText(12 * 3600) == "12h")
        #expect(Interceptor.durationText(90 * 60) == "90m")
        #expect(Interceptor.durationText(45) == "45s")
    }
}
