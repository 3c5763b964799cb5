import Foundation

/// The control socket's wire format: newline-delimited JSON, one request per connection.
///
/// A request is one line. `events` answers with event lines exactly as the log holds them,
/// interleaved with control lines (objects with a `control` key: `missed`, `history-end`, `error`).
/// Every other request answers with one ``ControlResponse`` line.
public struct ControlRequest: Codable, Sendable, Equatable {
    public enum Command: String, Codable, Sendable {
        case status, attach, detach, events, ping, reload, grant
        /// Statements held by `review` guardrails: list, release, refuse.
        case pending, approve, reject
    }

    public var command: Command
    /// attach/detach: the cgroup, hierarchy-relative or absolute.
    public var cgroup: String?
    /// detach: every guard.
    public var all: Bool?
    /// events: stream live events after the history.
    public var follow: Bool?
    public var filter: EventFilter?
    /// attach: the policy (the config's default when nil).
    public var policy: String?
    /// grant: what to allow, for how many seconds, why, and who asked.
    public var allow: String?
    public var seconds: Double?
    public var reason: String?
    public var user: String?
    /// approve/reject: the held statement's id (its `guardrail` event's `request`).
    public var request: String?

    public init(command: Command, cgroup: String? = nil, all: Bool? = nil, follow: Bool? = nil, filter: EventFilter? = nil,
                policy: String? = nil, allow: String? = nil, seconds: Double? = nil, reason: String? = nil, user: String? = nil,
                request: String? = nil) {
        self.request = request
        self.command = command
        self.cgroup = cgroup
        self.all = all
        self.follow = follow
        self.filter = filter
        self.policy = policy
        self.allow = allow
        self.seconds = seconds
        self.reason = reason
        self.user = user
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var status: DaemonStatus?
    public var message: String?

    public init(ok: Bool, error: String? = nil, status: DaemonStatus? = nil, message: String? = nil) {
        self.ok = ok
        self.error = error
        self.status = status
        self.message = message
    }
}

/// A control line inside an `events` stream.
public struct ControlNotice: Codable, Sendable, Equatable {
    public var control: String
    public var count: Int?
    public var message: String?

    public init(control: String, count: Int? = nil, message: String? = nil) {
        self.control = control
        self.count = count
        self.message = message
    }
}

/// What `bordergate status` shows.
public struct DaemonStatus: Codable, Sendable {
    public struct Guard: Codable, Sendable {
        public var cgroup: String
        public var cgroupID: UInt64
        public var policy: String
        public var processes: Int
        public var grants: [String]?
        /// Live proxied connections the kernel counts for the cgroup itself (`proxy:` limits).
        public var proxied: UInt64?

        public init(cgroup: String, cgroupID: UInt64, policy: String, processes: Int, grants: [String]? = nil) {
            self.cgroup = cgroup
            self.cgroupID = cgroupID
            self.policy = policy
            self.processes = processes
            self.grants = grants
        }
    }

    public var pid: Int32
    public var version: String
    public var startedAt: Date
    public var proxy: [String]
    public var pinRoot: String
    public var stateDirectory: String
    public var auditLog: String
    public var cgroupRoot: String
    public var programs: [String]
    public var guards: [Guard]
    public var kernel: [String: UInt64]
    public var proxyCounters: [String: UInt64]
    public var audit: [String: UInt64]
    public var subscribers: Int
    public var config: String?
    public var policies: [String]?
    public var defaultPolicy: String?
    /// One line per region table in force.
    public var tables: [String]?
    /// The kernel's copy: prefix counts and map memory in bytes.
    public var kernelTables: [String: UInt64]?
    /// Bytes the daemon's allocator has handed out and not got back (free lists not counted).
    public var heapInUse: UInt64?
    /// The session recording store, in words: its path, size and retention, or why it is off.
    public var recordings: String?
    /// Set while the audit log cannot be written: since when, why, and that connections are refused.
    public var auditProblem: String?

    public init(pid: Int32, version: String, startedAt: Date, proxy: [String], pinRoot: String, stateDirectory: String,
                auditLog: String, cgroupRoot: String, programs: [String], guards: [Guard], kernel: [String: UInt64],
                proxyCounters: [String: UInt64], audit: [String: UInt64], subscribers: Int,
                config: String? = nil, policies: [String]? = nil, defaultPolicy: String? = nil, tables: [String]? = nil,
                kernelTables: [String: UInt64]? = nil, heapInUse: UInt64? = nil) {
        self.pid = pid
        self.version = version
        self.startedAt = startedAt
        self.proxy = proxy
        self.pinRoot = pinRoot
        self.stateDirectory = stateDirectory
        self.auditLog = auditLog
        self.cgroupRoot = cgroupRoot
        self.programs = programs
        self.guards = guards
        self.kernel = kernel
        self.proxyCounters = proxyCounters
        self.audit = audit
        self.subscribers = subscribers
        self.config = config
        self.policies = policies
        self.defaultPolicy = defaultPolicy
        self.tables = tables
        self.kernelTables = kernelTables
        self.heapInUse = heapInUse
    }
}
