import BordergateInspection
import BordergateMasking
import BordergatePolicy
import BordergateProxy
import Foundation
import NIOConcurrencyHelpers

extension Policy {
    /// What the proxy does with its connections' content: nothing (relayed as they are), or mask
    /// and record them. What cannot be inspected (TLS not intercepted, SSH) is refused when the
    /// policy masks with `on-error: block`, else relayed as it is with the event saying so.
    var inspectionPlan: InspectionPlan {
        guard needsContent else { return .none }
        let relayUninspectable = mask == nil || mask?.onError == .pass
        return InspectionPlan(interceptTLS: tls == .intercept, masking: mask == nil ? nil : MaskingRulesReference(name),
                              record: record, sql: sql == nil ? nil : MaskingRulesReference(name),
                              uninspectable: relayUninspectable ? .relay : .refuse)
    }
}

/// The masking rules of a policy, as the HTTP handler asks for them by the plan's reference (the
/// policy's name): built from the configuration in force, so a reload's rules apply to the next
/// connection, with the hash strategy's key from the state directory. Built once per policy and
/// configuration, not per connection: the cache holds the snapshot it was built from and starts
/// again when the residency core publishes another.
final class MaskingRulesProvider: Sendable {
    let residency: Residency
    let hashKey: [UInt8]
    private let cache = NIOLockedValueBox<(snapshot: ResidencySnapshot?, rules: [String: HTTPMaskRules])>((nil, [:]))

    init(residency: Residency, hashKey: [UInt8]) {
        self.residency = residency
        self.hashKey = hashKey
    }

    func rules(for reference: MaskingRulesReference) -> HTTPMaskRules? {
        let snapshot = residency.snapshot
        return cache.withLockedValue { cache -> HTTPMaskRules? in
            if cache.snapshot !== snapshot { cache = (snapshot, [:]) }
            if let built = cache.rules[reference.name] { return built }
            let config = snapshot.config.config
            guard let policy = config.policies[reference.name], let mask = policy.mask else { return nil }
            let engine = MaskingEngine(mask.configuration(maskers: config.maskers, hashKey: hashKey))
            let built = HTTPMaskRules(engine: engine, headers: Set(mask.headers), blockOnError: mask.onError == .block)
            cache.rules[reference.name] = built
            return built
        }
    }

    /// A policy's rules for PostgreSQL connections: its masking engine and its `sql:` guardrails.
    func postgresRules(for reference: MaskingRulesReference) -> PostgreSQLRules? {
        let config = residency.snapshot.config.config
        guard let policy = config.policies[reference.name] else { return nil }
        let http = policy.mask == nil ? nil : rules(for: reference)
        if policy.mask != nil, http == nil { return nil }
        let guardrails = policy.sql.map { sql in
            SQLGuardrails(deny: sql.deny.map(Self.guardrail), review: sql.review.map(Self.guardrail),
                          blockUndecidable: sql.onError == .block, audit: policy.mode == .audit,
                          reviewTimeout: sql.reviewTimeout)
        }
        return PostgreSQLRules(engine: http?.engine, blockOnError: http?.blockOnError ?? true, guardrails: guardrails)
    }

    static func guardrail(_ rule: SQLPolicy.Rule) -> SQLGuardrails.Rule {
        switch rule {
        case .kind(let k): .kind(SQLGuardrails.Kind(rawValue: k.rawValue)!) // the same names, tested
        case .table(let t): .table(t)
        }
    }

    /// The `hash` strategy's key, made on first use (32 random bytes, 0600): the same value masks
    /// to the same token across sessions and restarts, and nobody without the key can test a guess.
    static func hashKey(settings: Settings) throws -> [UInt8] {
        let dir = settings.stateDirectory + "/masking"
        let path = dir + "/hash.key"
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count == 32 else {
                throw ServiceError("the masking key \(path) holds \(data.count) bytes, not 32; move it away to make a new one (masked tokens then change)")
            }
            return [UInt8](data)
        }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var generator = SystemRandomNumberGenerator()
            let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let tmp = path + ".tmp.\(getpid())"
            guard FileManager.default.createFile(atPath: tmp, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
                throw ServiceError("cannot write \(tmp)")
            }
            // link, not rename: of two processes making the key at once, both keep the first one's
            let linked = link(tmp, path) == 0 || errno == EEXIST
            let why = String(cString: strerror(errno))
            unlink(tmp)
            guard linked else { throw ServiceError("cannot create \(path): \(why)") }
            if let data = FileManager.default.contents(atPath: path), data.count == 32 { return [UInt8](data) }
            return key
        } catch let e as ServiceError {
            throw ServiceError("cannot create the masking key: \(e.description); check that \(dir) is writable")
        } catch {
            throw ServiceError("cannot create the masking key \(path): \(error.localizedDescription); check that \(dir) is writable")
        }
    }
}
