import ArgumentParser
import BordergateAudit
import BordergatePolicy
import BordergateRecording
import Foundation
import Logging
import Testing
@testable import BordergateCLI

@Suite struct RecordingSettingsTextTests {
    @Test func policyCheckSaysWhatRecordingKeeps() {
        #expect(Output.recordingSettings(RecordingConfig()) == "recording: retain 30d, max-size 2.0 GiB, max-session-body 64.0 MiB")
        #expect(Output.recordingSettings(RecordingConfig(retain: 90 * 60, maxBytes: 500 << 20, maxSessionBodyBytes: 1000))
            == "recording: retain 90m, max-size 500.0 MiB, max-session-body 1000 B")
    }
}

/// `bordergate sessions` against a store populated here, in a state directory of its own.
@Suite final class SessionsCommandTests {
    let dir: String
    let now = Date()

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    init() throws {
        dir = NSTemporaryDirectory() + "bg-sessions-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let store = try SessionStore(path: SessionStore.path(stateDirectory: dir), logger: Logger(label: "test"))
        let recorder = StoreRecorder(store: store, sink: { _ in })
        let t = now.addingTimeInterval(-600)
        let curl = AuditEvent.Process(pid: 4242, ppid: 1, uid: 1000, user: "ci", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci/job-1")
        let a = recorder.open(SessionStart(id: "aaaa-1", startedAt: t, process: curl,
                                           destination: .init(ip: "198.51.100.10", port: 80, host: "api.example.com"),
                                           policy: "eu-only", protocol: .http, content: true))
        a.append(.http(HTTPExchange(
            method: "POST", target: "/v1/users?q=1", status: 200,
            requestHeaders: [RecordedHeader(name: "Host", value: "api.example.com"), RecordedHeader(name: "Content-Type", value: "application/json")],
            responseHeaders: [RecordedHeader(name: "Content-Type", value: "application/json")],
            requestBody: Array("{\"email\":\"[email]\"}".utf8), responseBody: Array(repeating: UInt8(ascii: "x"), count: 1229),
            requestBodyBytes: 19, responseBodyBytes: 1229, startedAt: t.addingTimeInterval(0.5), respondedAt: t.addingTimeInterval(0.6),
            finishedAt: t.addingTimeInterval(0.7), masked: ["email": 2, "credit-card": 1])))
        a.append(.http(HTTPExchange(method: "GET", target: "/logo.png", status: 200, responseBody: [0x89, 0x50, 0x4e, 0x47, 0, 1],
                                    responseBodyBytes: 6, startedAt: t.addingTimeInterval(2.5), finishedAt: t.addingTimeInterval(2.6))))
        a.close(SessionEnd(endedAt: t.addingTimeInterval(3), bytes: .init(sent: 400, received: 1500), ending: .closedBy(.client)))
        let python = AuditEvent.Process(pid: 99, ppid: 1, uid: 0, user: "root", comm: "python3", exe: "/usr/bin/python3", cgroup: "/other")
        let b = recorder.open(SessionStart(id: "bbbb-2", startedAt: now.addingTimeInterval(-30 * 86400), process: python,
                                           destination: .init(ip: "203.0.113.9", port: 8080, host: "files.other.org"),
                                           policy: "open", protocol: .http, content: false))
        b.append(.http(HTTPExchange(method: "GET", target: "/f", status: 404, responseBody: Array("gone".utf8), responseBodyBytes: 4,
                                    startedAt: now.addingTimeInterval(-30 * 86400), finishedAt: now.addingTimeInterval(-30 * 86400 + 1))))
        b.close(SessionEnd(endedAt: now.addingTimeInterval(-30 * 86400 + 2), bytes: .init(sent: 10, received: 20), ending: nil))
        store.flush()
    }

    func list(_ args: String...) throws -> String {
        try SessionsCommand.List.parse(args + ["--state-dir", dir]).render()
    }

    @Test func listIsATable() throws {
        let out = try list()
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(out)")
        for column in ["ID", "START", "DURATION", "PID", "EXE", "DEST", "PROTOCOL", "ENTRIES", "BYTES", "MASKED"] {
            #expect(lines[0].contains(column), "\(lines[0])")
        }
        #expect(lines[1].hasPrefix("bbbb-2") && lines[2].hasPrefix("aaaa-1"), "oldest first: \(out)")
        let a = lines[2].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(a.contains("curl") && a.contains("api.example.com:80") && a.contains("3.0s") && a.contains("4242"), "\(a)")
        #expect(a.last == "3" && a.contains("2"), "3 masked, 2 entries: \(a)")
        #expect(lines[1].contains("python3") && lines[1].contains("files.other.org:8080"))
        // columns line up: every row's DEST cell starts under the header's
        let dest = try #require(lines[0].range(of: "DEST")).lowerBound.utf16Offset(in: lines[0])
        for line in lines {
            let chars = Array(line)
            #expect(chars.count > dest && chars[dest - 1] == " " && chars[dest] != " ", "\(line)")
        }
    }

    @Test func listFilters() throws {
        #expect(try list("--pid", "99").contains("bbbb-2"))
        #expect(!(try list("--pid", "99").contains("aaaa-1")))
        #expect(try list("--cgroup", "/ci").contains("aaaa-1"))
        #expect(!(try list("--cgroup", "/ci").contains("bbbb-2")))
        #expect(!(try list("--cgroup", "/c").contains("aaaa-1")), "a cgroup and those below it, not a prefix of its name")
        #expect(try list("--host", "*.OTHER.org").contains("bbbb-2"))
        #expect(!(try list("--host", "*.other.org").contains("aaaa-1")))
        #expect(try list("--since", "1h").contains("aaaa-1"))
        #expect(!(try list("--since", "1h").contains("bbbb-2")))
        #expect(try list("--pid", "1") == "no recorded sessions match\n")
        #expect(throws: (any Error).self) { try SessionsCommand.List.parse(["--since", "yesterday"]) }
    }

    @Test func listAsJSONLines() throws {
        let lines = try list("-o", "json").split(separator: "\n")
        #expect(lines.count == 2)
        let objects = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects.map { $0["id"] as? String } == ["bbbb-2", "aaaa-1"])
        #expect((objects[1]["process"] as? [String: Any])?["pid"] as? Int == 4242)
        #expect(objects[1]["masked"] as? Int == 3 && objects[0]["content"] as? Bool == false)
    }

    @Test func showIsReadable() throws {
        let out = try SessionsCommand.Show.parse(["aaaa-1", "--state-dir", dir]).render()
        #expect(out.contains("POST /v1/users?q=1 -> 200 (1.2 KiB, 3 masked: email 2, credit-card 1)"), "\(out)")
        #expect(out.contains("> Host: api.example.com"))
        #expect(out.contains("< Content-Type: application/json"))
        #expect(out.contains("| {\"email\":\"[email]\"}"))
        #expect(out.contains("GET /logo.png -> 200 (6 B)"))
        #expect(out.contains("<6 bytes binary>"))
        #expect(out.contains("sha256    ") && out.contains("closed by client"))
        #expect(!out.contains("more bytes"), "1.2 KiB is shown whole")
        let body = Output.body(Array(repeating: UInt8(ascii: "y"), count: 5000), truncated: false, limit: 4096)
        #expect(body.contains("<904 more bytes: --full shows all") && body.split(separator: "\n").filter { $0.hasPrefix("    | ") }.map { $0.count - 6 }.reduce(0, +) == 4096)
        #expect(try SessionsCommand.Show.parse(["aaaa-1", "--full"]).full)
        let meta = try SessionsCommand.Show.parse(["bbbb-2", "--state-dir", dir]).render()
        #expect(meta.contains("metadata only") && meta.contains("GET /f -> 404 (4 B)") && !meta.contains("gone"), "\(meta)")
    }

    @Test func anUnknownIDIsOneErrorAndExitCode1() async throws {
        #expect {
            _ = try SessionsCommand.Show.parse(["nope", "--state-dir", dir]).render()
        } throws: { error in
            "\(error)".contains("no recorded session nope") && !"\(error)".contains("\n")
        }
        for args in [["show", "nope"], ["export", "nope", "--format", "har"], ["replay", "nope", "--speed", "0"]] {
            var command = try BordergateCommand.parseAsRoot(["sessions"] + args + ["--state-dir", dir])
            if var async = command as? any AsyncParsableCommand {
                await #expect(throws: ExitCode(1)) { try await async.run() }
            } else {
                #expect(throws: ExitCode(1)) { try command.run() }
            }
        }
        // no store at all is an error too, not an empty list
        #expect(throws: StoreError.self) { _ = try SessionsCommand.List.parse(["--state-dir", dir + "/none"]).render() }
    }

    @Test func exportAsHAR() throws {
        let data = try SessionsCommand.Export.parse(["aaaa-1", "--format", "har", "--state-dir", dir]).render()
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let log = try #require(root["log"] as? [String: Any])
        #expect(log["version"] as? String == "1.2")
        let entries = try #require(log["entries"] as? [[String: Any]])
        #expect(entries.count == 2)
        let request = try #require(entries[0]["request"] as? [String: Any])
        #expect(request["url"] as? String == "http://api.example.com/v1/users?q=1")
        let json = try SessionsCommand.Export.parse(["aaaa-1", "--state-dir", dir]).render()
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect((object["entries"] as? [Any])?.count == 2)
        #expect(throws: (any Error).self) { try SessionsCommand.Export.parse(["aaaa-1", "--format", "xml"]) }
    }

    @Test func replayKeepsThePaceDividedBySpeed() throws {
        var lines: [String] = []
        var pauses: [TimeInterval] = []
        try SessionsCommand.Replay.parse(["aaaa-1", "--speed", "2", "--state-dir", dir])
            .replay(emit: { lines.append($0) }, sleep: { pauses.append($0) })
        #expect(lines.count == 4 && lines[1].contains("POST /v1/users") && lines[2].contains("GET /logo.png"))
        #expect(pauses.count == 2 && abs(pauses[0] - 0.25) < 1e-3 && abs(pauses[1] - 1.0) < 1e-3, "\(pauses)")
        pauses = []
        try SessionsCommand.Replay.parse(["aaaa-1", "--speed", "0", "--state-dir", dir])
            .replay(emit: { _ in }, sleep: { pauses.append($0) })
        #expect(pauses.isEmpty)
        #expect(throws: (any Error).self) { try SessionsCommand.Replay.parse(["aaaa-1", "--speed", "-1"]) }
    }
}
