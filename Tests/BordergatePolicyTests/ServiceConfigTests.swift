import BordergatePolicy
import Testing

@Suite struct ServiceConfigTests {
    @Test func auditAndMetricsAreRead() throws {
        let c = try parse("audit: {rotate: 100MiB, retain: 90d}\nmetrics: {listen: 127.0.0.1:9380}\npolicies:\n  p: {}\n")
        #expect(c.audit == AuditLogConfig(rotateBytes: 100 << 20, retain: 90 * 86400))
        #expect(c.metrics == MetricsConfig(host: "127.0.0.1", port: 9380))
        #expect(try parse("metrics:\n  listen: '[::1]:9400'\npolicies:\n  p: {}\n").metrics?.listen == "[::1]:9400")
    }

    @Test func withoutThemTheLogIsOneFileAndNoMetricsAreServed() throws {
        let c = try parse("policies:\n  p: {}\n")
        #expect(c.audit == AuditLogConfig() && c.metrics == nil)
    }

    @Test func badValuesSayWhereAndWhat() {
        #expect(parseError("policies:\n  p: {}\naudit:\n  rotate: big\n")
            == "cfg.yaml:4:11: rotate is 'big'; expected a size of at least 64KiB such as 100MiB or 1GiB")
        #expect(parseError("policies:\n  p: {}\naudit:\n  rotate: 1KiB\n").hasPrefix("cfg.yaml:4:11: rotate is '1KiB'"))
        #expect(parseError("policies:\n  p: {}\naudit:\n  retain: never\n")
            == "cfg.yaml:4:11: retain is 'never'; expected a duration such as 90d, 12h or 90m")
        #expect(parseError("policies:\n  p: {}\naudit:\n  keep: 3d\n")
            == "cfg.yaml:4:3: unknown key 'keep' in audit; expected rotate or retain")
        #expect(parseError("policies:\n  p: {}\nmetrics:\n  listen: 0.0.0.0:9380\n")
            == "cfg.yaml:4:11: listen is '0.0.0.0:9380'; metrics are served on loopback only: expected 127.0.0.1:PORT or [::1]:PORT")
        #expect(parseError("policies:\n  p: {}\nmetrics:\n  listen: 127.0.0.1\n")
            == "cfg.yaml:4:11: listen is '127.0.0.1'; expected a loopback address and port such as 127.0.0.1:9380 or [::1]:9380")
        #expect(parseError("policies:\n  p: {}\nmetrics: {}\n").hasPrefix("cfg.yaml:3:10: metrics needs 'listen:'"))
    }
}
