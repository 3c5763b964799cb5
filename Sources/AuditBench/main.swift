import BordergateAudit
import Foundation

// The audit writer's throughput, chained and signed (what the daemon writes) against the same
// events written unchained (what the log was before the chain), through the same file path,
// batches and sync policy, alternating rounds in one process. Prints JSON for scripts/bench.

let count = 200_000
let batch = 200
let rounds = 5

func event(_ i: Int) -> AuditEvent {
    AuditEvent(time: Date(), id: "e\(i)", type: .connect, verdict: .pass, reason: "allow[0]: jurisdiction EU",
               process: .init(pid: 100 + i % 30000, ppid: 1, uid: 1000, user: "ci", comm: "curl", exe: "/usr/bin/curl", cgroup: "/ci/job"),
               destination: .init(ip: "198.51.100.\(i % 250)", port: 443, host: "h\(i % 97).example", region: "aws:eu-west-1",
                                  country: "DE", jurisdictions: ["DE", "EU", "EEA"]),
               protocol: .tls, policy: "eu-only", rule: "allow[0]", connection: "c\(i)")
}

let events = (0..<count).map(event)
let dir = NSTemporaryDirectory() + "bg-auditbench-\(getpid())"

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Events per second of CPU time: the machine is shared with the rest of the bench.
func run(chained: Bool, round: Int) throws -> Double {
    let path = "\(dir)/\(chained ? "chained" : "plain")-\(round)/events.jsonl"
    let log = try AuditLog(path: path)
    var block: [UInt8] = []
    block.reserveCapacity(1 << 20)
    var lines: [Range<Int>] = []
    let cpu0 = cpuSeconds()
    var i = 0
    while i < count {
        let slice = Array(events[i..<min(count, i + batch)])
        if chained {
            try log.appendEvents(slice, into: &block, lines: &lines)
        } else {
            block.removeAll(keepingCapacity: true)
            for e in slice {
                e.appendJSON(to: &block)
                block.append(UInt8(ascii: "\n"))
            }
            try block.withUnsafeBytes { _ = try log.appendBlock($0) }
        }
        log.syncIfDirty()
        i += batch
    }
    let cpu = cpuSeconds() - cpu0
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
    return Double(count) / max(cpu, 1e-6)
}

var plain: [Double] = [], chained: [Double] = []
for r in 0..<rounds {
    // alternating which goes first, so neither always meets the other's dirty pages
    if r % 2 == 0 {
        plain.append(try run(chained: false, round: r))
        chained.append(try run(chained: true, round: r))
    } else {
        chained.append(try run(chained: true, round: r))
        plain.append(try run(chained: false, round: r))
    }
}
try? FileManager.default.removeItem(atPath: dir)
func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
let result: [String: Double] = ["unchained_events_per_cpu_s": median(plain).rounded(), "chained_events_per_cpu_s": median(chained).rounded(),
                                "ratio": (median(chained) / median(plain) * 1000).rounded() / 1000]
print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
