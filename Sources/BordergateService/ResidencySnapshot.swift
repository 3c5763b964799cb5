import BordergateAudit
import BordergatePolicy
import Foundation
import NIOConcurrencyHelpers

/// What the residency core holds at one moment, for readers: the configuration, the policy of
/// every slot a connection or event may name (in force, being installed, freed recently, or
/// recovered from the pins), and each guarded cgroup's policy and grants. It never changes; a
/// change publishes a new one, so an explanation reads one consistent state without holding a
/// lock. Its caches are its own: they start empty with every new snapshot.
public final class ResidencySnapshot: Sendable {
    public struct KernelCounts: Sendable {
        public var ipv4Prefixes = 0
        public var ipv6Prefixes = 0
        public var classes = 0
        public var slotsInUse = 0
    }

    public let config: ResidencyConfig
    public let policies: [Int: Policy]
    let assignments: [UInt64: Assignment]
    public let kernelCounts: KernelCounts
    /// Explanations of kernel verdicts: a busy runner talks to the same few destinations, and
    /// every verdict event needs one.
    private let explained = NIOLockedValueBox([KernelVerdictKey: Explanation]())
    private let upfront = NIOLockedValueBox([UpfrontKey: (Explanation, Bool)]())
    static let cacheLimit = 8192

    private struct KernelVerdictKey: Hashable {
        let slot: UInt32
        let udp: Bool
        let verdict: String
        let ip: String
    }

    /// What an upfront explanation depends on (a struct: formatting a string key per connection
    /// cost more than the lookup).
    private struct UpfrontKey: Hashable {
        let slot: UInt32
        let ip: String
        let uid: UInt32?
        let exe: String?
    }

    init(config: ResidencyConfig, policies: [Int: Policy], assignments: [UInt64: Assignment], kernelCounts: KernelCounts) {
        self.config = config
        self.policies = policies
        self.assignments = assignments
        self.kernelCounts = kernelCounts
    }

    public struct Explanation: Sendable {
        public var destination: AuditEvent.Destination
        public var policy: String
        public var rule: String
        public var reason: String
    }

    /// ``explain(ip:port:slot:udp:host:process:verdict:)`` for a kernel verdict (no hostname, no
    /// process), remembered.
    public func explainKernelVerdict(ip: String, port: Int, slot: UInt32, udp: Bool, verdict: String) -> Explanation {
        let key = KernelVerdictKey(slot: slot, udp: udp, verdict: verdict, ip: ip)
        if var hit = explained.withLockedValue({ $0[key] }) {
            hit.destination.port = port
            return hit
        }
        let x = explain(ip: ip, port: port, slot: slot, udp: udp, host: .unknown, process: .unknown, verdict: verdict)
        explained.withLockedValue {
            if $0.count >= Self.cacheLimit { $0.removeAll(keepingCapacity: true) }
            $0[key] = x
        }
        return x
    }

    /// Region, policy, rule and reason of a verdict, in words. `host` and `process` say what the
    /// decider knew: the kernel knows neither.
    public func explain(ip: String, port: Int, slot: UInt32, udp: Bool, host: DestinationFacts.Host,
                        process: ProcessFacts, verdict: String) -> Explanation {
        explanation(of: judge(ip: ip, port: port, slot: slot, udp: udp, host: host, process: process), udp: udp, verdict: verdict)
    }

    /// One lookup of the destination and one evaluation of the slot's policy: what the
    /// explanation and the proxy's verdict are both made from.
    private struct Judgement {
        var facts: DestinationFacts
        var destination: AuditEvent.Destination
        var slot: UInt32
        var policy: Policy?
        var outcome: PolicyOutcome?
    }

    private func judge(ip: String, port: Int, slot: UInt32, udp: Bool, host: DestinationFacts.Host,
                       process: ProcessFacts) -> Judgement {
        var (facts, _) = config.facts(ip: ip, host: host)
        if udp { facts.host = .none }
        let dest = AuditEvent.Destination(ip: ip, port: port, host: { if case .name(let h) = host { return h }; return nil }(),
                                          region: facts.region, country: facts.country,
                                          jurisdictions: facts.jurisdictions.isEmpty ? nil : facts.jurisdictions)
        let policy = policies[Int(slot)]
        return Judgement(facts: facts, destination: dest, slot: slot, policy: policy,
                         outcome: policy?.evaluate(facts, process: process))
    }

    private func explanation(of j: Judgement, udp: Bool, verdict: String) -> Explanation {
        let (facts, dest) = (j.facts, j.destination)
        guard let policy = j.policy, let outcome = j.outcome else {
            return Explanation(destination: dest, policy: "?", rule: "?", reason: "policy slot \(j.slot) is unknown to this daemon (set by an earlier one)")
        }
        switch outcome {
        case .decided(let action, let rule):
            var reason = policy.reason(action, rule: rule, dest: facts)
            if verdict == "audit" { reason = "audit mode, would be refused: " + reason }
            else if action == .allow && verdict == "deny" { reason = "refused although " + reason }
            return Explanation(destination: dest, policy: policy.name, rule: policy.ruleLabel(rule), reason: reason)
        case .undecided(let rule):
            let needs = policy.ruleNeedsProcess(rule) ? "the process" : "the hostname"
            let why: String
            if udp {
                why = verdict == "audit" ? "needs \(needs), which UDP cannot show: would be refused (audit mode)"
                                         : "needs \(needs), which UDP cannot show: refused (fail closed)"
            } else {
                why = "needs \(needs): relayed through the proxy to decide"
            }
            return Explanation(destination: dest, policy: policy.name, rule: policy.ruleLabel(rule),
                               reason: "\(facts.description): \(policy.ruleLabel(rule)) of policy \(policy.name) \(why)")
        }
    }

    // MARK: The proxy's share

    /// A redirected connection before any byte: its explanation, and whether it still needs a
    /// verdict from the proxy (the hostname decides, or the policy refuses it and the proxy must
    /// say so in the protocol's words). Remembered per slot, address and process, as every
    /// relayed connection asks.
    public func proxyUpfront(ip: String, port: Int, slot: UInt32, process: ProcessFacts) -> (Explanation, needsVerdict: Bool) {
        let key = UpfrontKey(slot: slot, ip: ip, uid: process.uid, exe: process.exe)
        if let hit = upfront.withLockedValue({ $0[key] }) {
            var x = hit.0
            x.destination.port = port
            return (x, hit.1)
        }
        let j = judge(ip: ip, port: port, slot: slot, udp: false, host: .unknown, process: process)
        let x = explanation(of: j, udp: false, verdict: "redirect")
        var needs = true
        if case .decided(.allow, _)? = j.outcome { needs = false }
        upfront.withLockedValue {
            if $0.count >= Self.cacheLimit { $0.removeAll(keepingCapacity: true) }
            $0[key] = (x, needs)
        }
        return (x, needs)
    }

    /// The proxy's verdict on a connection, in the residency core's terms (the proxy's own type
    /// is made from it where the two are wired together).
    public struct Decision: Sendable {
        public var relay: Bool
        /// For the event: `redirect` (relayed), `deny` (refused here), `audit` (would be refused; relayed).
        public var verdict: Verdict
        public var reason: String
        public var policy: String
        public var rule: String?
        public var destination: AuditEvent.Destination
    }

    /// The verdict once the proxy has looked at the first bytes. What cannot be decided is refused
    /// (in audit mode: relayed and reported).
    public func proxyDecision(ip: String, port: Int, slot: UInt32, host: DestinationFacts.Host, process: ProcessFacts) -> Decision {
        let j = judge(ip: ip, port: port, slot: slot, udp: false, host: host, process: process)
        let x = explanation(of: j, udp: false, verdict: "redirect")
        let facts = j.facts
        guard let policy = j.policy, let outcome = j.outcome else {
            return Decision(relay: false, verdict: .deny, reason: x.reason + ": refused (fail closed)", policy: x.policy,
                            rule: x.rule, destination: x.destination)
        }
        let refusal: String
        switch outcome {
        case .decided(.allow, _):
            return Decision(relay: true, verdict: .redirect, reason: x.reason, policy: x.policy, rule: x.rule,
                            destination: x.destination)
        case .decided(.deny, let rule):
            refusal = policy.reason(.deny, rule: rule, dest: facts)
        case .undecided(let rule):
            let what = policy.ruleNeedsProcess(rule) ? "the process is unknown" : "the hostname could not be read"
            refusal = "\(facts.description): \(policy.ruleLabel(rule)) of policy \(policy.name) cannot be decided (\(what)): refused (fail closed)"
        }
        if policy.mode == .audit {
            return Decision(relay: true, verdict: .audit, reason: "audit mode, would be refused: " + refusal,
                            policy: x.policy, rule: x.rule, destination: x.destination)
        }
        return Decision(relay: false, verdict: .deny, reason: refusal, policy: x.policy, rule: x.rule,
                        destination: x.destination)
    }
}
