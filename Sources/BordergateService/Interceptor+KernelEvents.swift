import BordergateCertificates
import BordergateAudit
import CBordergateSys
import BordergateKernel
import BordergatePolicy
import BordergateInspection
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The kernel's events made audit events, and the resolver the proxy asks who a connection is.
extension Interceptor {
    /// Blocks until every kernel event submitted before the call has been published to the hub,
    /// so a reader of the history right after (`events` without follow, `exec`'s summary) sees a
    /// refusal that happened before it asked. False if that took longer than `timeout`.
    /// It waits on the reader thread and the event pump: never call it from the concurrency pool.
    public func settleKernelEvents(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        guard let reader else { return true }
        guard let target = reader.barrier(timeout: timeout) else { return false }
        let settled = handled.withLock {
            while handledCount < target {
                guard handled.wait(until: deadline) else { return false }
            }
            return true
        }
        // refusals after the first of their second are only counted so far
        reportRefusalsSoFar()
        return settled
    }

    func countHandled() {
        handled.lock()
        handledCount &+= 1
        handled.broadcast()
        handled.unlock()
    }

    func handleKernelEvent(_ e: KernelConnectEvent) {
        switch e.verdict {
        case .redirect where e.superseded:
            hub.publish(auditEvent(for: e, verdict: .deny, reason: Self.supersededReason))
        case .redirect:
            // The kernel reports a redirect only when its socket goes without having reached the
            // proxy; the proxy reports every one it accepts.
            reportUnreached(e)
        case .deny:
            // the first refusal of its process, destination and second: the kernel counts the rest
            let event = auditEvent(for: e, verdict: .deny)
            refusalReporter.noteFirst(e, event)
            hub.publish(event)
        default:
            hub.publish(auditEvent(for: e, verdict: e.audited ? .audit : Verdict(rawValue: e.verdict.rawValue)))
        }
    }

    func reportUnreached(_ e: KernelConnectEvent) {
        hub.publish(auditEvent(for: e, verdict: .redirect,
                               error: "the connection never reached the proxy (no daemon was listening, the tool gave up first, or the daemon stopped before accepting it)"))
    }

    /// The two halves of a client port that came round before the proxy accepted the connection
    /// that held it (BG_ORIG_CONTESTED in bordergate_abi.h).
    static let supersededReason = "a later connection from the same client address and port reached the proxy before it accepted this one, and it cannot tell the two apart: refused (fail closed; the proxy is falling behind)"
    static let auditBlockedReason = "the daemon cannot write its audit log: refused until it can (fail closed)"
    static let contestedReason = "an earlier connection from the same client address and port was still waiting for the proxy, and it cannot tell the two apart: refused (fail closed; the proxy is falling behind)"

    func auditEvent(for e: KernelConnectEvent, verdict: Verdict, reason override: String? = nil,
                            error: String? = nil) -> AuditEvent {
        let udp = e.ipProtocol == 17
        let ip = e.destination.description
        let x = residency.explainKernelVerdict(ip: ip, port: Int(e.port), slot: e.policySlot, udp: udp, verdict: verdict.rawValue)
        let destination = x.destination
        var reason = kernelReasonText(e.reason)
        var policy: String?
        var rule: String?
        switch e.reasonKind {
        case .policy:
            (reason, policy, rule) = (x.reason, x.policy, x.rule)
        case .noProxy:
            (policy, rule) = (x.policy, x.rule)
        default:
            break
        }
        if let override { reason = override }
        return AuditEvent(
            time: wallClock(monotonicNanos: e.identity.monotonicNanos), type: .connect, verdict: verdict,
            reason: reason, process: describer.describe(e.identity, ppid: e.ppid, exe: e.exe),
            destination: destination, protocol: udp ? .udp : .tcp, policy: policy, rule: rule,
            connection: connectionID(cookie: e.identity.cookie), error: error)
    }
}

/// The proxy's view of the kernel: who a connection belongs to and where it was going.
struct KernelResolver: ConnectionResolver {
    let kernel: KernelGuard
    let describer: ProcessDescriber
    let residency: Residency
    let hub: AuditHub

    func resolve(client: SocketAddress) -> ProxiedConnection? {
        guard let (addr, port) = KernelAddress.from(client),
              let orig = kernel.claimOriginal(clientAddress: addr, clientPort: port)
        else { return nil }
        let ip = orig.destination.description
        let target = orig.destination.socketAddress(port: orig.port)
        let process = describer.describe(orig.identity)
        let facts = ProcessFacts(exe: process.exe, uid: UInt32(process.uid))
        let dstPort = Int(orig.port)
        let slot = orig.policySlot
        // What is decidable without the hostname is decided now; the rest waits for the first bytes.
        let (upfront, needsVerdict) = residency.proxyUpfront(ip: ip, port: dstPort, slot: slot, process: facts)
        var conn = ProxiedConnection(
            connectionID: connectionID(cookie: orig.identity.cookie), target: target, process: process,
            destination: upfront.destination, policy: upfront.policy, reason: upfront.reason,
            connectedAt: wallClock(monotonicNanos: orig.identity.monotonicNanos))
        conn.rule = upfront.rule
        if let policy = residency.policy(slot: slot) { conn.inspection = policy.inspectionPlan }
        if !hub.isWritable {
            // redirected before the kernel was told; nothing unrecorded leaves
            conn.refusal = Interceptor.auditBlockedReason
        } else if orig.contested {
            conn.refusal = Interceptor.contestedReason
        } else if needsVerdict {
            conn.decide = { [residency] host in
                residency.proxyVerdict(ip: ip, port: dstPort, slot: slot, host: host, process: facts)
            }
        }
        return conn
    }
}

extension KernelAddress {
    /// The address to dial, built from the bytes (not parsed back from text).
    func socketAddress(port: UInt16) -> SocketAddress {
        if isIPv4Mapped {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr.s_addr = ipv4NetworkOrder
            return SocketAddress(sin, host: "")
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.storeBytes(of: raw, as: KernelAddress.Raw.self) }
        return SocketAddress(sin6, host: "")
    }

    /// The kernel's form of an accepted peer's address and port, read from the sockaddr (this
    /// runs for every proxied connection, so no detour through text).
    static func from(_ address: SocketAddress) -> (KernelAddress, UInt16)? {
        switch address {
        case .v4(let a):
            return (KernelAddress(ipv4: a.address.sin_addr.s_addr), UInt16(bigEndian: a.address.sin_port))
        case .v6(let a):
            return (KernelAddress(tuple: a.address.sin6_addr), UInt16(bigEndian: a.address.sin6_port))
        case .unixDomainSocket:
            return nil
        }
    }
}
