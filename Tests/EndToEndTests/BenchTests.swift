import Foundation
import Testing

extension EndToEnd {
    /// `scripts/bench` end to end, as a smoke test: one short round of the connection-rate and
    /// event-pipeline workloads against the debug build (the numbers are not the point here; the
    /// release build's are README's). It runs on another documentation range than the other
    /// tests' test hosts, so the two namespaces can be up at once.
    @Test func benchRunsEveryPathPrintsItsTableAndLeavesNothingBehind() throws {
        try Harness.requireEnvironment()
        let json = NSTemporaryDirectory() + "bge2e-bench-\(getpid()).json"
        defer { try? FileManager.default.removeItem(atPath: json) }
        let r = Harness.sh("BG_NET_PREFIX4=203.0.113 BG_NET_PREFIX6=2001:db8:b: \(Harness.packageRoot)/scripts/bench "
                           + "--quick --only connect,events --binary \(Harness.binary) --json \(json)",
                           timeout: 900)  // on a new machine it first installs haproxy, wrk, nginx and iperf3
        #expect(r.status == 0, "scripts/bench failed: \(r.stderr.suffix(1500))")

        // the table: every path of the connection workload, and the event pipeline's four runs
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("| connect |") || $0.hasPrefix("| events |") }
        for path in ["direct", "kernel-pass", "kernel-deny", "bordergate", "haproxy", "redirect-haproxy"] {
            let row = rows.first { $0.contains("| \(path) |") && $0.hasPrefix("| connect |") }
            #expect(row?.contains(path == "kernel-deny" ? "refused/s" : "conn/s") == true, "no connect row for \(path): \(r.stdout)")
        }
        #expect(rows.filter { $0.hasPrefix("| events |") && $0.contains(" lost of ") }.count == 4, "\(r.stdout)")
        #expect(!rows.contains { $0.contains("failed") }, "\(r.stdout)")

        // every sample in the JSON file, none failed
        let data = try Data(contentsOf: URL(fileURLWithPath: json))
        let doc = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let samples = try #require(doc["samples"] as? [[String: Any]])
        #expect(samples.filter { $0["workload"] as? String == "connect" }.count == 6)
        let events = samples.filter { $0["workload"] as? String == "events" }
        #expect(events.count == 4)
        for s in samples {
            #expect(s["error"] == nil, "\(s)")
        }
        for s in events {
            let kernel = s["kernel_connects"] as? Int ?? 0, logged = s["connect_events_logged"] as? Int ?? -1
            #expect(kernel > 0 && logged > 0 && s["lost"] as? Int == kernel - logged, "\(s)")
        }

        // nothing left: namespace, pins, cgroups, servers, temporary directory (the brackets keep
        // pgrep from finding the shell that runs it)
        #expect(!Harness.sh("ip netns list").stdout.contains("bgbench"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/bgbench"), "pins left behind")
        #expect(!FileManager.default.fileExists(atPath: Harness.cgroupRoot + "/bgbench"))
        #expect(Harness.sh("pgrep -f '[b]gbench-|[i]perf3 -s -p 5201'").stdout.isEmpty, "processes left running")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp"))?.filter { $0.hasPrefix("bgbench-") } ?? []
        #expect(left.isEmpty, "\(left)")
    }
}

extension EndToEnd {
    /// Bad arguments: one line that says what is wrong, before anything is set up, and nothing
    /// left behind.
    @Test func benchRefusesBadArgumentsInOneLine() throws {
        for (args, says) in [("--only connect,nonsense", "--only nonsense: no such workload"),
                             ("--binary /nonexistent/bordergate", "--binary /nonexistent/bordergate: not an executable file")] {
            let r = Harness.sh("\(Harness.packageRoot)/scripts/bench --quick \(args)")
            #expect(r.status == 1, "\(args): \(r.stdout) \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("bench: \(says)") == true, "\(args): \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(args): \(r.stdout)")
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp"))?.filter { $0.hasPrefix("bgbench-") } ?? []
        #expect(left.isEmpty, "\(left)")
    }
}
