import ArgumentParser
import BordergateAudit
import BordergateService
import Foundation
import Logging

/// Paths and ports every command may override (flags win over environment over defaults).
struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("State directory (audit log). Env: BORDERGATE_STATE_DIR.", valueName: "dir"))
    var stateDir: String?

    @Option(help: ArgumentHelp("Where kernel objects are pinned in bpffs. Env: BORDERGATE_PIN_ROOT.", valueName: "dir"))
    var pinRoot: String?

    @Option(help: ArgumentHelp("The daemon's control socket. Env: BORDERGATE_CONTROL_SOCKET.", valueName: "path"))
    var controlSocket: String?

    @Option(help: ArgumentHelp("The proxy's port on 127.0.0.1 and ::1. Env: BORDERGATE_PROXY_PORT.", valueName: "port"))
    var proxyPort: Int?

    @Option(help: ArgumentHelp("Config file (default /etc/bordergate/config.yaml if it exists, else the built-in policy). Env: BORDERGATE_CONFIG.", valueName: "file"))
    var config: String?

    var settings: Settings {
        Settings(stateDirectory: stateDir, pinRoot: pinRoot, controlSocket: controlSocket, proxyPort: proxyPort,
                 configPath: config)
    }
}

extension CommonOptions {
    /// Sends one request to the daemon and returns its message; a refusal becomes the error.
    func ask(_ request: ControlRequest, doing what: String) throws -> String {
        let r = try ControlClient(path: settings.controlSocket).call(request)
        guard r.ok else { throw ServiceError(r.error ?? "\(what) failed") }
        return r.message ?? "done"
    }
}

func makeLogger(default level: Logger.Level) -> Logger {
    var logger = Logger(label: "bordergate") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = ProcessInfo.processInfo.environment["BORDERGATE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
    return logger
}

/// Runs a command body; a failure becomes one line on stderr and exit status 1.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch {
        Output.error(operatorText(error))
        throw ExitCode(1)
    }
}

/// An error in words, with the flag or setting that fixes it: the libraries report the cause as
/// fields and leave naming flags to this edge.
func operatorText(_ error: any Error) -> String {
    switch error {
    case let e as AuditError where e.isStateDirectoryUnusable:
        return "\(e); set --state-dir or BORDERGATE_STATE_DIR to a writable directory"
    case let e as ControlClient.ConnectError:
        if case .noDaemon = e {
            return "\(e); start one with 'bordergate daemon', or set --control-socket / BORDERGATE_CONTROL_SOCKET"
        }
        return "\(e)"
    default:
        return "\(error)"
    }
}
