import BordergateRecording
import Foundation

/// Where Bordergate keeps its state and how it is reached. Every path can be overridden by a flag
/// or an environment variable, so tests never touch the system's.
public struct Settings: Sendable {
    public var stateDirectory: String
    public var pinRoot: String
    public var controlSocket: String
    public var proxyPort: Int
    /// The config file; nil means the default path if it exists, else the built-in policy.
    public var configPath: String?

    public static let defaultStateDirectory = "/var/lib/bordergate"
    public static let defaultPinRoot = "/sys/fs/bpf/bordergate"
    public static let defaultControlSocket = "/run/bordergate/control.sock"
    /// Below 1024, so no unprivileged process can bind it before the daemon does (unassigned by IANA).
    public static let defaultProxyPort = 738
    public static let defaultConfigPath = "/etc/bordergate/config.yaml"

    public init(stateDirectory: String? = nil, pinRoot: String? = nil, controlSocket: String? = nil,
                proxyPort: Int? = nil, configPath: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.stateDirectory = stateDirectory ?? environment["BORDERGATE_STATE_DIR"] ?? Self.defaultStateDirectory
        self.pinRoot = pinRoot ?? environment["BORDERGATE_PIN_ROOT"] ?? Self.defaultPinRoot
        self.controlSocket = controlSocket ?? environment["BORDERGATE_CONTROL_SOCKET"] ?? Self.defaultControlSocket
        self.proxyPort = proxyPort ?? environment["BORDERGATE_PROXY_PORT"].flatMap(Int.init) ?? Self.defaultProxyPort
        self.configPath = configPath ?? environment["BORDERGATE_CONFIG"]
    }

    public var auditLogPath: String { stateDirectory + "/audit/events.jsonl" }
    /// The compiled default region tables that scripts/setup.sh writes.
    public var defaultTablesPath: String { stateDirectory + "/regions/default.bgrt" }
    /// Which policy each guarded cgroup has, so a restarted daemon recompiles the same ones.
    public var attachmentsPath: String { stateDirectory + "/attachments.json" }
    /// The session recording store (SQLite, WAL) that `bordergate sessions` reads.
    public var recordingsPath: String { SessionStore.path(stateDirectory: stateDirectory) }
}

public let bordergateVersion = "0.1.0"

/// A failure of the service, phrased for an operator: one line, what and what to do.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
