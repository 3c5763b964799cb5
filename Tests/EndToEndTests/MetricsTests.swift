import Foundation
import Testing

extension EndToEnd {
    static let metricsPort = 19_422
    static let metricsConfig = """
        metrics:
          listen: 127.0.0.1:\(metricsPort)
        policies:
          default:
            inspect: all
            unknown: allow
            deny:
              - host: blocked.example
            mask:
              detectors: [email]
              on-error: pass
        """

    /// The sum of every sample of a family whose labels contain `labels` (`policy="default"`).
    static func sample(_ page: String, _ name: String, _ labels: String = "") -> Double {
        page.split(separator: "\n").filter { !$0.hasPrefix("#") }.reduce(0) { sum, line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == name || parts[0].hasPrefix(name + "{"),
                  labels.isEmpty || parts[0].contains(labels) else { return sum }
            return sum + (Double(parts[1]) ?? 0)
        }
    }

    /// A daemon with `metrics:` serves /metrics on loopback; after a few connections a real
    /// Prometheus tool accepts the page and the numbers are the connections made.
    @Test func metricsAreServedOnLoopbackAndPromtoolAcceptsThem() throws {
        try Harness.requireEnvironment()
        guard Harness.sh("command -v promtool").status == 0 else {
            throw HarnessError("promtool is missing: install Debian's prometheus package (apt-get install prometheus; .ci/run does)")
        }
        let d = DaemonFixture("metrics", port: 17_423, config: Self.metricsConfig)
        defer { d.tearDown() }
        try d.start()
        let cg = try Harness.makeCgroup("metrics")
        defer { Harness.removeCgroup(cg) }
        #expect(d.cli("attach \(cg)").status == 0)
        let url = "http://127.0.0.1:\(Self.metricsPort)/metrics"
        let r = Harness.sh(Harness.inCgroup(cg, """
            for i in 1 2 3; do curl -sS -o /dev/null http://\(Harness.host4)/; done
            curl -sS -o /dev/null -H 'Host: blocked.example' http://\(Harness.host4)/
            curl -sS http://\(Harness.host4)/pii.json | grep -c '\\[EMAIL\\]'
            """))
        #expect(r.stdout.contains("1"), "the email was masked: \(r.stdout) \(r.stderr)")

        var page = ""
        for _ in 0..<100 {
            page = Harness.sh("curl -sS \(url)").stdout
            if Self.sample(page, "bordergate_refusals_total") >= 1 && Self.sample(page, "bordergate_masked_values_total") >= 1 { break }
            usleep(100_000)
        }
        #expect(Self.sample(page, "bordergate_connections_total", #"policy="default""#) >= 5, "\(page)")
        #expect(Self.sample(page, "bordergate_refusals_total", #"policy="default""#) == 1, "\(page)")
        #expect(Self.sample(page, "bordergate_connections_total", #"verdict="deny""#) == 1, "\(page)")
        #expect(Self.sample(page, "bordergate_masked_values_total", #"detector="email""#) >= 1, "\(page)")
        #expect(Self.sample(page, "bordergate_proxy_sent_bytes_total") > 0 && Self.sample(page, "bordergate_proxy_received_bytes_total") > 0, "\(page)")
        #expect(Self.sample(page, "bordergate_proxy_active_connections") == 0, "\(page)")
        #expect(Self.sample(page, "bordergate_audit_log_writable") == 1, "\(page)")
        #expect(Self.sample(page, "bordergate_guarded_cgroups") == 1, "\(page)")
        #expect(page.contains("bordergate_ring_buffer_drops_total 0"), "\(page)")
        #expect(page.contains("bordergate_reload_errors_total 0"), "\(page)")
        #expect(page.contains(#"bordergate_build_info{version=""#), "\(page)")
        for line in page.split(separator: "\n") {
            let name = line.hasPrefix("# ") ? line.split(separator: " ").dropFirst(2).first.map(String.init) ?? "" : String(line)
            #expect(name.hasPrefix("bordergate_"), "every name starts with bordergate_: \(line)")
        }
        let lint = Harness.sh("curl -sS \(url) | promtool check metrics")
        #expect(lint.status == 0, "promtool: \(lint.stdout) \(lint.stderr)")

        // a failed reload is counted
        try "policies: [".write(toFile: d.configPath, atomically: true, encoding: .utf8)
        #expect(d.cli("reload").status != 0)
        var reloaded = ""
        for _ in 0..<50 {
            reloaded = Harness.sh("curl -sS \(url)").stdout
            if Self.sample(reloaded, "bordergate_reload_errors_total") == 1 { break }
            usleep(100_000)
        }
        #expect(Self.sample(reloaded, "bordergate_reload_errors_total") == 1, "\(reloaded)")
        // only /metrics, and only on loopback
        #expect(Harness.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:\(Self.metricsPort)/other").stdout == "404")
        let listening = Harness.sh("ss -Hltn 'sport = :\(Self.metricsPort)' | awk '{print $4}'").stdout
        #expect(listening == "127.0.0.1:\(Self.metricsPort)\n", "the local addresses listening: \(listening)")
    }
}
