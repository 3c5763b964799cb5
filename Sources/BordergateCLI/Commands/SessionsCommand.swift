import ArgumentParser
import BordergateAudit
import BordergateRecording
import BordergateService
import Foundation

/// `bordergate sessions`: the recorded sessions, read straight from the store in the state
/// directory (read-only; the daemon may be writing it at the same time).
struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List, show, replay and export recorded sessions.",
        discussion: """
            A session is one proxied connection that a protocol handler recorded: its HTTP exchanges or \
            SQL statements, as the tool saw them (masked). Its id is the connection id events show in \
            'connection'. Content (headers, bodies, parameters) is kept only where the policy records \
            it; otherwise metadata only (methods, targets, statuses, sizes, timings).

              bordergate sessions list --since 1h --host '*.example.com'
              bordergate sessions show 3f2a9c1e-4d2
              bordergate sessions replay 3f2a9c1e-4d2 --speed 10
              bordergate sessions export 3f2a9c1e-4d2 --format har > session.har
            """,
        subcommands: [List.self, Show.self, Replay.self, Export.self])

    /// The store of the state directory, opened read-only.
    static func archive(_ common: CommonOptions) throws -> SessionArchive {
        try SessionArchive(path: common.settings.recordingsPath)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "One line per recorded session, oldest first.")

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("Only sessions active since a duration ago (90s, 15m, 2h, 7d) or an RFC 3339 time.", valueName: "when"))
        var since: String?

        @Option(help: "Only sessions of this process id.")
        var pid: Int?

        @Option(help: ArgumentHelp("Only sessions of this cgroup and those below it.", valueName: "path"))
        var cgroup: String?

        @Option(help: ArgumentHelp("Only sessions whose destination hostname (or address) matches this glob.", valueName: "glob"))
        var host: String?

        @Option(name: .shortAndLong, help: "Output: text (a table) or json (one session per line).")
        var output: TextOrJSON = .text

        func validate() throws {
            if let since, EventFilter.parseSince(since) == nil {
                throw ValidationError("--since takes a duration (90s, 15m, 2h, 7d) or an RFC 3339 time, not '\(since)'")
            }
        }

        var query: SessionQuery {
            var matchHost: (@Sendable (String) -> Bool)?
            if let glob = host?.lowercased() {
                matchHost = { name in fnmatch(glob, name.lowercased(), 0) == 0 }
            }
            return SessionQuery(since: since.flatMap { EventFilter.parseSince($0) }, pid: pid, cgroup: cgroup, host: matchHost)
        }

        func render() throws -> String {
            let sessions = try SessionsCommand.archive(common).list(query)
            return try Output.sessions(sessions, as: output)
        }

        func run() async throws {
            try await reportingErrors { print(try render(), terminator: "") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show", abstract: "A session and its exchanges or statements, readable.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The session's id (its connection id).")
        var id: String

        @Flag(help: "Print whole bodies (otherwise the first 4 KiB of each).")
        var full = false

        func render() throws -> String {
            let archive = try SessionsCommand.archive(common)
            let session = try archive.require(id)
            return Output.session(session, entries: try archive.entries(id), bodyLimit: full ? nil : 4096)
        }

        func run() async throws {
            try await reportingErrors { print(try render(), terminator: "") }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replay", abstract: "Print a session's entries in order, at their original pace.",
            discussion: "Nothing is sent anywhere: the entries are printed, each after the pause that preceded it, divided by --speed.")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The session's id (its connection id).")
        var id: String

        @Option(help: ArgumentHelp("Divide the original pauses by this (0: no waiting).", valueName: "N"))
        var speed: Double = 1

        func validate() throws {
            guard speed >= 0, speed.isFinite else { throw ValidationError("--speed takes a number of 0 or more, not \(speed)") }
        }

        /// Writes each line through `emit`, pausing between entries; `sleep` is injectable for tests.
        func replay(emit: (String) -> Void, sleep: (TimeInterval) -> Void = { Thread.sleep(forTimeInterval: $0) }) throws {
            let archive = try SessionsCommand.archive(common)
            let session = try archive.require(id)
            let entries = try archive.entries(id)
            emit(Output.sessionHeadline(session))
            var previous = session.startedAt
            for e in entries {
                let pause = e.startedAt.timeIntervalSince(previous)
                if speed > 0, pause > 0 { sleep(pause / speed) }
                previous = e.startedAt
                emit(Output.entryLine(e, session: session))
            }
            emit("end of session \(session.id): \(entries.count) entr\(entries.count == 1 ? "y" : "ies")")
        }

        func run() async throws {
            try await reportingErrors {
                try replay(emit: { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) })
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export", abstract: "Write a session as HAR 1.2 (its HTTP exchanges) or JSON (everything kept).")

        @OptionGroup var common: CommonOptions

        @Argument(help: "The session's id (its connection id).")
        var id: String

        @Option(help: "har or json.")
        var format: SessionExport.Format = .json

        func render() throws -> Data {
            let archive = try SessionsCommand.archive(common)
            let session = try archive.require(id)
            var data = try SessionExport.data(session, entries: try archive.entries(id), format: format, version: bordergateVersion)
            data.append(UInt8(ascii: "\n"))
            return data
        }

        func run() async throws {
            try await reportingErrors { FileHandle.standardOutput.write(try render()) }
        }
    }
}

extension SessionExport.Format: ExpressibleByArgument {}
