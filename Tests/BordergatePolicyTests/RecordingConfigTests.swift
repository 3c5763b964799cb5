import BordergatePolicy
import Testing

@Suite struct RecordingConfigTests {
    @Test func recordingIsRead() throws {
        let c = try parse("recording:\n  retain: 12h\n  max-size: 500MiB\n  max-session-body: 1MB\npolicies:\n  p: {}\n")
        #expect(c.recording.retain == 12 * 3600)
        #expect(c.recording.maxBytes == 500 << 20)
        #expect(c.recording.maxSessionBodyBytes == 1_000_000)
        let flow = try parse("recording: {retain: 30d, max-size: 2GiB}\npolicies:\n  p: {}\n")
        #expect(flow.recording == RecordingConfig(retain: 30 * 86400, maxBytes: 2 << 30))
    }

    @Test func withoutRecordingTheDefaultsHold() throws {
        let c = try parse("policies:\n  p: {}\n")
        #expect(c.recording.retain == 30 * 86400 && c.recording.maxBytes == 2 << 30 && c.recording.maxSessionBodyBytes == 64 << 20)
        #expect(BordergateConfig.builtIn.recording == RecordingConfig())
    }

    @Test(arguments: [("30d", 2_592_000.0), ("12h", 43_200), ("90m", 5400), ("45s", 45), ("2w", 1_209_600)])
    func durations(_ text: String, _ seconds: Double) {
        #expect(ConfigParser.duration(text) == seconds)
    }

    @Test(arguments: ["", "d", "30", "1.5d", "-1d", "30 days", "30D", "99999999999d"])
    func notDurations(_ text: String) {
        #expect(ConfigParser.duration(text) == nil)
    }

    @Test(arguments: [("2GiB", UInt64(2) << 30), ("500MiB", 500 << 20), ("1GB", 1_000_000_000), ("64KiB", 65536),
                      ("10kB", 10_000), ("4096", 4096), ("1TiB", 1 << 40)])
    func sizes(_ text: String, _ bytes: UInt64) {
        #expect(ConfigParser.byteSize(text) == bytes)
    }

    @Test(arguments: ["", "GiB", "2 gib", "2Gi", "1.5GB", "-1MB", "99999999999TiB"])
    func notSizes(_ text: String) {
        #expect(ConfigParser.byteSize(text) == nil)
    }

    @Test func badValuesSayWhereAndWhat() {
        #expect(parseError("policies:\n  p: {}\nrecording:\n  retain: forever\n")
            == "cfg.yaml:4:11: retain is 'forever'; expected a duration such as 30d, 12h or 90m")
        #expect(parseError("policies:\n  p: {}\nrecording:\n  max-size: 2 lots\n")
            == "cfg.yaml:4:13: max-size is '2 lots'; expected a size such as 2GiB, 500MiB or 1GB")
        #expect(parseError("policies:\n  p: {}\nrecording:\n  max-size: 0\n").hasPrefix("cfg.yaml:4:13: max-size is '0'"))
        #expect(parseError("policies:\n  p: {}\nrecording:\n  keep: 3d\n")
            == "cfg.yaml:4:3: unknown key 'keep' in recording; expected retain, max-size or max-session-body")
        #expect(parseError("policies:\n  p: {}\nrecording: 30d\n").hasPrefix("cfg.yaml:3:12: recording must be a mapping"))
    }
}
