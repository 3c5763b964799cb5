import ArgumentParser
import BordergateAudit
import BordergateService
import Foundation
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

    @Test(arguments: [["exec", "--help"], ["exec", "-h"], ["exec", "--quiet", "--help"], ["exec", "--policy", "eu-only", "-h"]])
    func execHelpPrintsExecsHelp(_ arguments: [String]) throws {
        do {
            _ = try BordergateCommand.parseAsRoot(arguments)
            Issue.record("\(arguments) parsed as a command to run")
        } catch {
            #expect(BordergateCommand.exitCode(for: error) == .success, "help is not a failure")
            let help = BordergateCommand.fullMessage(for: error)
            #expect(help.contains("USAGE: bordergate exec"), "\(help)")
            #expect(help.contains("--quiet") && help.contains("--policy"), "\(help)")
        }
    }

    @Test func aHelpFlagAfterDoubleDashOrTheCommandIsTheCommands() throws {
        #expect(try ExecCommand.parse(["--", "--help"]).command == ["--help"])
        #expect(try ExecCommand.parse(["curl", "--help"]).command == ["curl", "--help"])
        #expect(try ExecCommand.parse(["--", "tool", "-h"]).command == ["tool", "-h"])
    }

    @Test func detachNeedsACgroupOrAll() throws {
        #expect(throws: (any Error).self) { try DetachCommand.parse([]) }
        #expect(throws: (any Error).self) { try DetachCommand.parse(["/ci", "--all"]) }
        #expect(try DetachCommand.parse(["--all"]).all)
        #expect(try DetachCommand.parse(["/ci/runner"]).cgroup == "/ci/runner")
    }

    @Test func eventsValidatesOutputAndSince() throws {
        let e = try EventsCommand.parse(["-f", "-o", "json", "--since", "15m", "--pid", "42", "--cgroup", "/ci"])
        #expect(e.follow && e.output == .json && e.pid == 42 && e.cgroup == "/ci")
        #expect(throws: (any Error).self) { try EventsCommand.parse(["-o", "xml"]) }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--since", "yesterday"]) }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--pid", "forty-two"]) }
    }

    @Test func eventsVerdictAndTypeAreTyped() throws {
        let e = try EventsCommand.parse(["--verdict", "grant-expired", "--type", "policy"])
        #expect(e.filter.verdict == .grantExpired && e.filter.type == .policy)
        #expect(try EventsCommand.parse(["--verdict", "deny"]).filter.verdict == .deny)
        #expect(throws: (any Error).self, "a verdict Bordergate never writes would match nothing") {
            try EventsCommand.parse(["--verdict", "denied"])
        }
        #expect(throws: (any Error).self) { try EventsCommand.parse(["--type", "conect"]) }
        let message = EventsCommand.message(for: try #require(Self.error { _ = try EventsCommand.parse(["--verdict", "nope"]) }))
        #expect(message.contains("redirect") && message.contains("grant-expired"), "the error lists what is accepted: \(message)")
    }

    @Test func outputFormatsAreChecked() throws {
        #expect(try StatusCommand.parse(["-o", "json"]).output == .json)
        #expect(try StatusCommand.parse([]).output == .text)
        #expect(throws: (any Error).self) { try StatusCommand.parse(["-o", "yaml"]) }
        #expect(try RegionsCommand.Lookup.parse(["-o", "json", "198.51.100.7"]).output == .json)
        #expect(throws: (any Error).self) { try RegionsCommand.Lookup.parse(["-o", "compact", "198.51.100.7"]) }
        #expect(throws: (any Error).self) { try RegionsCommand.Lookup.parse(["198.51.100.300"]) }
    }

    @Test func commonOptionsOverrideTheEnvironment() throws {
        let s = try AttachCommand.parse(["/ci", "--state-dir", "/tmp/s", "--proxy-port", "9000"]).common.settings
        #expect(s.stateDirectory == "/tmp/s")
        #expect(s.proxyPort == 9000)
    }

    static func error(_ body: () throws -> Void) -> (any Error)? {
        do { try body() } catch { return error }
        return nil
    }
}

/// The libraries report causes as fields; the CLI adds which flag fixes them.
@Suite struct ErrorTextTests {
    @Test func noDaemonNamesTheFlagOnlyAtTheEdge() {
        let e = ControlClient.ConnectError.noDaemon(path: "/run/x.sock", errno: ENOENT)
        #expect(!"\(e)".contains("--"), "the library names no flag: \(e)")
        let text = operatorText(e)
        #expect(text.hasPrefix("no Bordergate daemon is running (nothing answers on /run/x.sock)"))
        #expect(text.contains("'bordergate daemon'") && text.contains("--control-socket"), "\(text)")
    }

    @Test func anUnusableStateDirectoryNamesTheFlag() throws {
        let e = AuditError(.open, path: "/nope/audit/events.jsonl", errno: EACCES)
        #expect(e.errno == EACCES && e.path == "/nope/audit/events.jsonl")
        #expect(!"\(e)".contains("--"))
        #expect(operatorText(e) == "cannot open the audit log /nope/audit/events.jsonl: Permission denied; set --state-dir or BORDERGATE_STATE_DIR to a writable directory")
        let write = AuditError(.write, path: "/x", errno: ENOSPC)
        #expect(!operatorText(write).contains("--state-dir"), "a full disk is not fixed by another directory flag")
    }
}

@Suite struct ExecPassthroughTests {
    @Test func onlyTheFirstDoubleDashIsExecs() throws {
        #expect(try ExecCommand.parse(["--", "--", "x"]).command == ["--", "x"])
        #expect(try BordergateCommand.parseAsRoot(["exec", "--quiet", "--", "curl", "-q"]) is ExecCommand)
    }
}
