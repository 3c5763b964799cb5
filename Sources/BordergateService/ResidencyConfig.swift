import BordergatePolicy
import BordergateRegions
import Foundation

/// The configuration in force: the parsed file, its region tables, and what the kernel holds of
/// them. Built whole or not at all, so a broken file or table never replaces a good one.
public struct ResidencyConfig: Sendable {
    public let config: BordergateConfig
    public let database: RegionDatabase
    /// One line per table: name, source, prefix counts.
    public let tableNotes: [String]

    public init(config: BordergateConfig, database: RegionDatabase) {
        self.config = config
        self.database = database
        tableNotes = database.tables.map { "\($0.name) (\($0.source)): \($0.ipv4Count) IPv4 and \($0.ipv6Count) IPv6 prefixes" }
    }

    /// The config file alone (the built-in policy when there is none), without its tables.
    static func loadConfigOnly(settings: Settings) throws -> BordergateConfig {
        if let path = settings.configPath {
            return try ConfigParser.load(path: path)
        } else if FileManager.default.fileExists(atPath: Settings.defaultConfigPath) {
            return try ConfigParser.load(path: Settings.defaultConfigPath)
        }
        return .builtIn
    }

    /// Reads the config (the built-in policy when there is no file) and every table it names.
    public static func load(settings: Settings) throws -> ResidencyConfig {
        let config = try loadConfigOnly(settings: settings)
        var tables: [RegionTable] = [SpecialRanges.table]
        if let sources = config.tables {
            for src in sources {
                do {
                    tables += try RegionTableReader.read(path: src.path, format: src.format, name: src.name)
                } catch {
                    throw ResidencyError.table(listedAt: src.origin, cause: error)
                }
            }
        } else if FileManager.default.fileExists(atPath: settings.defaultTablesPath) {
            tables += try RegionTableReader.read(path: settings.defaultTablesPath, format: .compiled)
        }
        return ResidencyConfig(config: config, database: RegionDatabase(tables: tables, catalog: config.catalog()))
    }

    /// Region facts of an address.
    public func facts(ip: String, host: DestinationFacts.Host) -> (DestinationFacts, RegionAnswer?) {
        let answer = IPAddress(ip).flatMap { database.lookup($0) }
        return (DestinationFacts(address: ip, answer: answer, host: host), answer)
    }
}

/// Why the residency core refused a change; the configuration in force stays. Each case keeps
/// what it is about as fields; `description` is the operator's line.
public enum ResidencyError: Error, Sendable, CustomStringConvertible {
    /// A table the config lists could not be read (`cause` says where in the table).
    case table(listedAt: String, cause: any Error)
    /// The config file in force is gone: the built-in policy would allow everything.
    case configGone(path: String)
    /// A reload drops a policy that guards a cgroup.
    case policyInUse(path: String, policy: String, cgroup: String)
    /// A reload no longer defines what a live grant allows.
    case grantTargetGone(path: String, grant: String, allow: String, cgroup: String, cause: GrantTargetError)
    case tooManyClasses(count: Int, limit: Int)
    case tooFewSlots(needed: Int, free: Int)
    case noSlotToPark
    case unknownPolicy(name: String, path: String, defined: [String])
    case notCompiled(policy: String)
    case notGuarded(cgroupID: UInt64)
    case grantTarget(GrantTargetError)
    case grantDuration(seconds: Double, maximum: Double)

    public var description: String {
        switch self {
        case .table(let origin, let cause):
            "\(cause) (table listed at \(origin))"
        case .configGone(let path):
            "\(path) is gone; restore it (the built-in policy would allow everything)"
        case .policyInUse(let path, let policy, let cgroup):
            "\(path): policy \(policy) is gone, but \(cgroup) is guarded with it; define it again or attach \(cgroup) with another policy first"
        case .grantTargetGone(let path, let grant, let allow, let cgroup, _):
            "grant \(grant) on \(cgroup) allows \(allow), which \(path) no longer defines; let it expire or re-attach \(cgroup)"
        case .tooManyClasses(let count, let limit):
            "the policies tell \(count) kinds of destination apart; the kernel holds at most \(limit); simplify the policies or load fewer tables"
        case .tooFewSlots(let needed, let free):
            "\(needed) policies and grant variants need kernel slots and only \(free) are free; end some grants or define fewer policies, then try again"
        case .noSlotToPark:
            "no free kernel slot to park guarded cgroups while the region tables are rebuilt; end some grants and try again"
        case .unknownPolicy(let name, let path, let defined):
            "no policy named '\(name)' in \(path); defined: \(defined.joined(separator: ", "))"
        case .notCompiled(let policy):
            "policy \(policy) is not compiled into the kernel; reload the daemon's configuration"
        case .notGuarded:
            "that cgroup is not guarded with a policy; grants apply to guarded cgroups (see the daemon's status)"
        case .grantTarget(let e):
            e.description
        case .grantDuration(let seconds, let maximum):
            "a grant of \(seconds) s is out of range; a grant lasts more than 0 s and at most \(Int(maximum / 86400)) days"
        }
    }
}
