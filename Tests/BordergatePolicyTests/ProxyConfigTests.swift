import BordergatePolicy
import Testing

@Suite struct ProxyConfigTests {
    @Test func limitsAreRead() throws {
        let c = try parse("proxy:\n  max-connections-per-cgroup: 50\n  max-connections-per-uid: 0\npolicies:\n  p: {}\n")
        #expect(c.proxy == ProxyConfig(maxConnectionsPerCgroup: 50, maxConnectionsPerUID: 0))
        let flow = try parse("proxy: {max-connections-per-uid: 100}\npolicies:\n  p: {}\n")
        #expect(flow.proxy == ProxyConfig(maxConnectionsPerCgroup: 4096, maxConnectionsPerUID: 100))
        #expect(try parse("proxy: {drain: 2m}\npolicies:\n  p: {}\n").proxy.drainSeconds == 120)
        #expect(try parse("proxy: {drain: 0}\npolicies:\n  p: {}\n").proxy.drainSeconds == 0)
    }

    @Test func withoutProxyTheDefaultsHold() throws {
        #expect(try parse("policies:\n  p: {}\n").proxy == ProxyConfig(maxConnectionsPerCgroup: 4096, maxConnectionsPerUID: 4096))
        #expect(BordergateConfig.builtIn.proxy == ProxyConfig())
    }

    @Test func badValuesSayWhereAndWhat() {
        #expect(parseError("policies:\n  p: {}\nproxy:\n  max-connections-per-cgroup: many\n")
            == "cfg.yaml:4:31: max-connections-per-cgroup is 'many'; expected a number of connections such as 4096 (0: no limit)")
        #expect(parseError("policies:\n  p: {}\nproxy:\n  max-connections-per-uid: -1\n")
            .hasPrefix("cfg.yaml:4:28: max-connections-per-uid is '-1'"))
        #expect(parseError("policies:\n  p: {}\nproxy:\n  max-connections: 5\n")
            == "cfg.yaml:4:3: unknown key 'max-connections' in proxy; expected max-connections-per-cgroup, max-connections-per-uid or drain")
        #expect(parseError("policies:\n  p: {}\nproxy:\n  drain: soon\n")
            == "cfg.yaml:4:10: drain is 'soon'; expected a duration such as 10s or 2m (at most 1h), or 0")
        #expect(parseError("policies:\n  p: {}\nproxy: 5\n").hasPrefix("cfg.yaml:3:8: proxy must be a mapping"))
    }
}
