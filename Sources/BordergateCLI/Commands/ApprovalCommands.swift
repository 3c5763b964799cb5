import ArgumentParser
import BordergateAudit
import Foundation

/// Statements held by a policy's `sql.review` guardrails: list, release, refuse.
struct PendingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pending",
        abstract: "List the SQL statements held for approval by 'sql.review' guardrails.")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await reportingErrors { print(try common.ask(ControlRequest(command: .pending), doing: "pending")) }
    }
}

struct ApproveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Release a held SQL statement to the server (its id is the guardrail event's request).")

    @OptionGroup var common: CommonOptions
    @Argument(help: "The held statement's id (bordergate pending).") var id: String
    @Option(help: "Why (recorded in the audit log).") var reason: String?

    func run() async throws {
        try await reportingErrors {
            print(try common.ask(ControlRequest(command: .approve, reason: reason, user: invokingUser(), request: id), doing: "approve"))
        }
    }
}

struct RejectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Refuse a held SQL statement: the client gets an ErrorResponse (42501) and its session goes on.")

    @OptionGroup var common: CommonOptions
    @Argument(help: "The held statement's id (bordergate pending).") var id: String
    @Option(help: "Why (recorded in the audit log).") var reason: String?

    func run() async throws {
        try await reportingErrors {
            print(try common.ask(ControlRequest(command: .reject, reason: reason, user: invokingUser(), request: id), doing: "reject"))
        }
    }
}

/// Who answered: the user behind sudo, else the caller.
func invokingUser() -> String {
    ProcessInfo.processInfo.environment["SUDO_USER"] ?? String(cString: getpwuid(getuid())?.pointee.pw_name ?? strdup("?"))
}
