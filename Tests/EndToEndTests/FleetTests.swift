import BordergateAudit
import Foundation
import Testing

/// A PostgreSQL server of the test's own (Debian's postgresql package), on loopback: the fleet's
/// central database. Runs as the postgres user from a data directory made by initdb.
final class PostgresServer {
    let port: Int
    let dir: String
    let bin: String

    init(port: Int) throws {
        self.port = port
        dir = "/tmp/bgpg-\(port)-\(getpid())"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.sorted().last else {
            throw HarnessError("PostgreSQL is missing (/usr/lib/postgresql): run apt-get install postgresql (.ci/run installs it)")
        }
        bin = "/usr/lib/postgresql/\(version)/bin"
        _ = Harness.sh("rm -rf \(dir) && mkdir -p \(dir) && chown postgres:postgres \(dir)")
        let r = Harness.sh("runuser -u postgres -- \(bin)/initdb -D \(dir)/data -A trust -U postgres --no-sync >\(dir)/initdb.log 2>&1")
        guard r.status == 0 else { throw HarnessError("initdb failed: \((try? String(contentsOfFile: "\(dir)/initdb.log", encoding: .utf8)) ?? "")") }
        try start()
    }

    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    func start() throws {
        let r = Harness.sh("runuser -u postgres -- \(bin)/pg_ctl -D \(dir)/data -w -l \(dir)/server.log -o '-h 127.0.0.1 -p \(port) -k \(dir) -c fsync=off' start")
        guard r.status == 0 else { throw HarnessError("PostgreSQL did not start: \(r.stdout) \(r.stderr)") }
    }

    func stop() {
        _ = Harness.sh("runuser -u postgres -- \(bin)/pg_ctl -D \(dir)/data -w -m fast stop")
    }

    func psql(_ sql: String) -> String {
        Harness.sh("runuser -u postgres -- \(bin)/psql -h 127.0.0.1 -p \(port) -U postgres -At -c \(Harness.shellQuote(sql))")
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit {
        stop()
        _ = Harness.sh("rm -rf \(dir)")
    }
}

extension EndToEnd {
    /// The seq of every event line in a daemon's log.
    func loggedSeqs(_ d: DaemonFixture) -> [Int] {
        let text = (try? String(contentsOfFile: d.auditLog, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { l in
            l.range(of: #","seq":"#).flatMap { Int(l[$0.upperBound...].prefix { $0.isNumber }) }
        }
    }

    @Test func everyEventReachesTheFleetTableOnceAcrossAPostgreSQLRestart() throws {
        try Harness.requireEnvironment()
        let pg = try PostgresServer(port: 17_481)
        let config = DaemonFixture.builtInConfig + """
            export:
              postgres:
                url: \(pg.url)
                table: fleet_events
            metrics:
              listen: 127.0.0.1:19483
            """
        try withOwnDaemon("fleet", port: 17_480, config: config) { d, cg in
            func exported() -> Int { Int(pg.psql("SELECT count(*) FROM fleet_events")) ?? -1 }
            func waitForExport(_ what: String) {
                let deadline = Date().addingTimeInterval(30)
                while exported() != loggedSeqs(d).count && Date() < deadline { usleep(200_000) }
                #expect(exported() == loggedSeqs(d).count, "\(what): \(exported()) rows for \(loggedSeqs(d).count) logged events")
            }
            #expect(try connections(100, in: cg).stdout.contains("done"))
            waitForExport("first run")

            // PostgreSQL goes away while events keep coming: they wait in the log, not in memory
            pg.stop()
            #expect(try connections(150, in: cg).stdout.contains("done"))
            sleep(2)
            try pg.start()
            #expect(try connections(50, in: cg).stdout.contains("done"))
            waitForExport("after the restart")
            let seqs = loggedSeqs(d)
            #expect(pg.psql("SELECT count(DISTINCT seq) FROM fleet_events") == String(seqs.count), "no duplicate")
            #expect(pg.psql("SELECT min(seq) || ' ' || max(seq) FROM fleet_events") == "\(seqs.first ?? 0) \(seqs.last ?? 0)")
            let host = pg.psql("SELECT DISTINCT host FROM fleet_events")
            #expect(!host.isEmpty && !host.contains("\n"), "one host: \(host)")
            // the line is stored exactly as the log has it: the chain can be checked from the table
            let lastLine = pg.psql("SELECT line FROM fleet_events ORDER BY seq DESC LIMIT 1")
            let log = (try? String(contentsOfFile: d.auditLog, encoding: .utf8)) ?? ""
            #expect(log.contains(lastLine + "\n"), "the stored line is the log's")

            // the same filters against the fleet table
            let connects = d.cli("events --source \(pg.url) --table fleet_events --type connect -o json")
            #expect(connects.status == 0, "\(connects.stderr)")
            let lines = connects.stdout.split(separator: "\n")
            #expect(lines.count >= 300, "\(lines.count) connect events from the fleet table")
            #expect(lines.allSatisfy { $0.hasPrefix("{\"host\":\"\(host)\",") && $0.contains("\"type\":\"connect\"") })
            let compact = d.cli("events --source \(pg.url) --table fleet_events --from '\(host)' --type close")
            #expect(compact.stdout.split(separator: "\n").count >= 300, "\(compact.stdout.suffix(300)) \(compact.stderr)")
            let none = d.cli("events --source \(pg.url) --table fleet_events --from 'no-such-host*'")
            #expect(none.status == 0 && none.stdout.isEmpty)

            // /metrics says how far the export is behind, and that it reaches PostgreSQL
            let page = Harness.sh("curl -sS http://127.0.0.1:19483/metrics").stdout
            #expect(page.contains("bordergate_export_connected 1"), "\(page.suffix(600))")
            let lag = page.split(separator: "\n").first { $0.hasPrefix("bordergate_export_lag_events ") }
            #expect(lag.flatMap { Double($0.split(separator: " ")[1]) }.map { $0 < 50 } == true, "\(lag ?? "no lag series")")
        }
    }

    @Test func aBrokenExportURLIsAConfigErrorAtItsLine() throws {
        let d = DaemonFixture("fleet-bad", port: 17_482, config: DaemonFixture.builtInConfig + "export:\n  postgres:\n    url: mysql://x@y/z\n")
        defer { d.tearDown() }
        let r = d.cli("policy check \(d.configPath)")
        #expect(r.status != 0)
        #expect(r.stderr.contains("config.yaml:7:10: export.postgres.url is not a PostgreSQL URL"), "\(r.stderr)")
    }
}
