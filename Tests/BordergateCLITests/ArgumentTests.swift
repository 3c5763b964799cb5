import ArgumentParser
import Testing
@testable import BordergateCLI

@Suite struct ArgumentTests {
    @Test func execTakesTheCommandAfterDoubleDash() throws {
        let c = try ExecCommand.parse(["--quiet", "--", "curl", "-sS", "--max-time", "5", "http://198.51.100.10/"])
        #expect(c.quiet)
        #expect(c.command == ["curl", "-sS", "--max-time", "5", "http://198.51.100.10/"])
    }

    @Test func execPassesTheCommandsOwnFlagsThrough() throws {
        let c = try ExecCommand.parse(["curl", "-q", "--quiet"])
        #expect(!c.quiet, "flags after the command are the command's")
        #expect(c.command == ["curl", "-q", "--quiet"])
    }

    @Test func execWithoutACommandSaysHowToUseIt() {
        #expect(throws: (any Error).self) { try ExecCommand.parse([]) }
        #expect(throws: (any Error).self) { try ExecCommand.parse(["--"]) }
        #expect(ExecCommand.message(for: ValidationError("x")).isEmpty == false)
    }

    @Test func detachNeedsACgroupOrAll() throws {
        #expect(throws: (any Error).self) { try DetachCommand.parse([]) }
        #expect(throws: (any Error).self) { try DetachCommand.parse(["/ci", "--all"]) }
        #expect(try DetachCommand.parse(["--all"]).all)
        #expect(try DetachCommand.parse(["/ci/runner"]).cgroup == "/ci/runner")
    }

    @Test func eventsValidatesOutputAndSince() throws {
        let e = try EventsCommand.parse(["-f", "-o", "json", "--since", "15m", "--pid", "42", "--cgroup", "/ci"])
        #expect(e.follow && e.output == "json" && e.pid == 42 && e.cgroup == "/ci")
        #expect(throws: (any Error).self) { try EventsCommand.parse(["-o", "xml"]) }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--since", "yesterday"]) }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--pid", "forty-two"]) }
    }

    @Test func commonOptionsOverrideTheEnvironment() throws {
        let s = try AttachCommand.parse(["/ci", "--state-dir", "/tmp/s", "--proxy-port", "9000"]).common.settings
        #expect(s.stateDirectory == "/tmp/s")
        #expect(s.proxyPort == 9000)
    }
}
