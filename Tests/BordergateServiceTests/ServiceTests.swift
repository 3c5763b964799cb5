import BordergateAudit
import BordergateKernel
import NIOCore
import Foundation
import Testing
@testable import BordergateService

@Suite struct SettingsTests {
    @Test func flagsWinOverEnvironmentOverDefaults() {
        let env = ["BORDERGATE_STATE_DIR": "/env/state", "BORDERGATE_PROXY_PORT": "9999"]
        let s = Settings(stateDirectory: nil, pinRoot: nil, controlSocket: "/flag.sock", proxyPort: nil, environment: env)
        #expect(s.stateDirectory == "/env/state")
        #expect(s.proxyPort == 9999)
        #expect(s.controlSocket == "/flag.sock")
        #expect(s.pinRoot == Settings.defaultPinRoot)
        #expect(s.auditLogPath == "/env/state/audit/events.jsonl")
    }
}

@Suite struct EventFormatterTests {
    let process = AuditEvent.Process(pid: 42, ppid: 1, uid: 0, user: "root", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci")

    @Test func theSummaryPairsConnectsWithTheirCloses() {
        let events = [
            AuditEvent(type: .connect, verdict: .redirect, process: process, destination: .init(ip: "2001:db8::10", port: 80), connection: "a"),
            AuditEvent(type: .connect, verdict: .redirect, process: process, destination: .init(ip: "198.51.100.10", port: 81), connection: "b"),
            AuditEvent(type: .close, verdict: .redirect, process: process, connection: "a", bytes: .init(sent: 77, received: 2048), duration_ms: 3.5, end: .closedBy(.server)),
            AuditEvent(type: .close, verdict: .redirect, process: process, connection: "b", bytes: .init(sent: 0, received: 0), duration_ms: 1, end: .upstreamFailed, error: "connecting to 198.51.100.10 port 81: connection refused"),
        ]
        let s = EventFormatter.summary(events, command: "curl")
        let lines = s.split(separator: "\n").map(String.init)
        #expect(lines[0] == "bordergate: curl made 2 connections")
        #expect(lines[1].contains("[2001:db8::10]:80") && lines[1].contains("received 2.0 KiB") && lines[1].contains("closed by server"))
        #expect(lines[2].contains("198.51.100.10:81") && lines[2].contains("upstream-failed: connecting to 198.51.100.10 port 81: connection refused"))
    }

    @Test func compactLinesNameProcessAndDestination() {
        let e = AuditEvent(type: .connect, verdict: .redirect, process: process, destination: .init(ip: "198.51.100.10", port: 443, host: "api.example.com"), connection: "a")
        let line = EventFormatter.compact(e)
        #expect(line.contains("curl[42]"))
        #expect(line.contains("→ 198.51.100.10:443 (api.example.com)"))
        #expect(!line.contains("/usr/bin/curl"), "an exe that only repeats the command name is left out")
    }

    @Test func refusalsSayWhyAndWhere() {
        let e = AuditEvent(type: .connect, verdict: .deny, reason: "country US is not allowed by policy eu-only",
                           process: process, destination: .init(ip: "198.51.100.200", port: 53, region: "US", country: "US"),
                           protocol: .udp, policy: "eu-only", rule: "default", connection: "c")
        let line = EventFormatter.compact(e)
        #expect(line.contains("→ 198.51.100.200:53 [US] udp"))
        #expect(line.hasSuffix("— country US is not allowed by policy eu-only"))
        let summary = EventFormatter.summary([e], command: "dig").split(separator: "\n").map(String.init)
        #expect(summary[1] == "  curl[42] → 198.51.100.200:53 udp  deny  country US is not allowed by policy eu-only")
    }

    @Test func bytesAreHumanSized() {
        #expect(EventFormatter.bytes(999) == "999 B")
        #expect(EventFormatter.bytes(52_428_800) == "50.0 MiB")
    }
}

@Suite struct PeerAddressTests {
    @Test func acceptedPeersBecomeKernelKeysWithoutText() throws {
        let v4 = try #require(KernelAddress.from(try SocketAddress(ipAddress: "127.0.0.1", port: 40000)))
        #expect(v4.0 == KernelAddress("127.0.0.1") && v4.1 == 40000)
        let v6 = try #require(KernelAddress.from(try SocketAddress(ipAddress: "::1", port: 443)))
        #expect(v6.0 == KernelAddress("::1") && v6.1 == 443)
        #expect(KernelAddress.from(try SocketAddress(unixDomainSocketPath: "/tmp/x")) == nil)
    }

    @Test func originalDestinationsBecomeAddressesToDialWithoutText() {
        #expect(KernelAddress("198.51.100.10")!.socketAddress(port: 8080) == (try? SocketAddress(ipAddress: "198.51.100.10", port: 8080)))
        #expect(KernelAddress("2001:db8::10")!.socketAddress(port: 443) == (try? SocketAddress(ipAddress: "2001:db8::10", port: 443)))
    }
}
