import BordergatePolicy
import BordergateProxy

/// Where the residency core meets the proxy: the proxy's words for a hostname and a verdict.
/// The core itself does not know the proxy module.
extension Residency {
    public func proxyVerdict(ip: String, port: Int, slot: UInt32, host: HostObservation, process: ProcessFacts) -> ProxyVerdict {
        let hostFact: DestinationFacts.Host
        switch host {
        case .name(let h): hostFact = .name(h)
        case .none: hostFact = .none
        case .unreadable: hostFact = .unknown
        }
        let d = proxyDecision(ip: ip, port: port, slot: slot, host: hostFact, process: process)
        return ProxyVerdict(relay: d.relay, verdict: d.verdict, reason: d.reason, policy: d.policy, rule: d.rule,
                            destination: d.destination)
    }
}
