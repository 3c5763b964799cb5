import BordergateAudit
import Foundation
import Testing

/// A real PostgreSQL server (Debian's) on the test host, started by the tests as the `postgres`
/// user inside the test network's namespace, so a guarded client reaches it through the guard.
/// Password authentication (SCRAM) for network clients: it passes through the proxy untouched.
enum PostgreSQLServer {
    static let port = 15_432
    static let password = "pg-test-secret-71"
    static let dir = "/tmp/bge2e-pg-\(getpid())"

    static let running: Result<Void, HarnessError> = {
        do {
            try Harness.requireEnvironment()
            guard let bin = Harness.sh("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1").stdout
                .trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty else {
                throw HarnessError("Debian's postgresql is not installed: run scripts/setup.sh")
            }
            let run = "ip netns exec \(Harness.netName) runuser -u postgres --"
            let setup = """
                set -e
                rm -rf \(dir); mkdir -p \(dir); chown postgres \(dir)
                runuser -u postgres -- \(bin)/initdb -D \(dir)/data --auth-local=trust --auth-host=scram-sha-256 -U postgres >\(dir)/initdb.log
                echo "host all all \(Harness.local4)/32 scram-sha-256" >> \(dir)/data/pg_hba.conf
                \(run) \(bin)/pg_ctl -D \(dir)/data -l \(dir)/server.log -w start \
                  -o "-c listen_addresses=\(Harness.host4) -p \(port) -k \(dir) -c password_encryption=scram-sha-256"
                psql() { runuser -u postgres -- \(bin)/psql -X -q -v ON_ERROR_STOP=1 -h \(dir) -p \(port) -U postgres "$@"; }
                psql -c "CREATE ROLE alice LOGIN PASSWORD '\(password)'"
                psql -c "CREATE DATABASE app OWNER alice"
                psql -d app -U postgres <<'SQL'
                SET ROLE alice;
                CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, note text);
                INSERT INTO customers VALUES
                  (1, 'Ada', 'ada.lovelace@example.org', '536-22-8841', 'card 4111 1111 1111 1111'),
                  (2, 'Grace', 'grace.hopper@example.org', '412-55-2083', 'none');
                CREATE SCHEMA payroll;
                CREATE TABLE payroll.salaries (who text, amount int);
                CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.org' AS email FROM generate_series(1, 20000) g;
                SQL
                """
            let r = Harness.sh(setup, timeout: 120)
            guard r.status == 0 else {
                throw HarnessError("cannot start PostgreSQL: \(r.stderr)\(r.stdout) \((try? String(contentsOfFile: dir + "/server.log", encoding: .utf8)) ?? "")")
            }
            atexit {
                let bin = Harness.sh("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                Harness.sh("ip netns exec \(Harness.netName) runuser -u postgres -- \(bin)/pg_ctl -D \(PostgreSQLServer.dir)/data -m immediate stop; rm -rf \(PostgreSQLServer.dir)")
            }
            return .success(())
        } catch let e as HarnessError {
            return .failure(e)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

let postgresConfig = """
    policies:
      default:
        inspect: all
        unknown: allow
      db:
        inspect: all
        unknown: allow
        mask:
          detectors: all
          fields: [ssn, "card_*"]
          on-error: block
        record: true
        sql:
          deny: [drop, truncate, delete-without-where, {table: "payroll.*"}]
          review: [alter]
          review-timeout: 3s
      db-copy:
        inspect: all
        unknown: allow
        mask: {detectors: all}
        record: true
    """

/// Values in the test database that no guarded client, event or recording may show.
let databasePII = ["ada.lovelace@example.org", "grace.hopper@example.org", "536-22-8841", "4111 1111 1111 1111"]

extension EndToEnd {
    static let postgres = startShared("postgres", port: 17_470, config: postgresConfig)

    func withDatabase(_ name: String, policy: String = "db", _ body: (DaemonFixture, String) throws -> Void) throws {
        try PostgreSQLServer.running.get()
        try withGuardedCgroup(name, on: Self.postgres, policy: policy, body)
    }

    /// psql in the guarded cgroup, as a client that was not reconfigured (sslmode: psql's default, prefer).
    func psql(_ cg: String, _ script: String) throws -> Harness.ShellResult {
        let path = NSTemporaryDirectory() + "bge2e-\(getpid())-\(UUID().uuidString).sql"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return Harness.sh(Harness.inCgroup(cg, "PGPASSWORD=\(PostgreSQLServer.password) psql -X -At -F'|' -h \(Harness.host4) -p \(PostgreSQLServer.port) -U alice -d app -f \(path)"))
    }

    func expectNoDatabasePII(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for value in databasePII {
            #expect(!text.contains(value), "\(what) holds '\(value)': \(text.prefix(600))", sourceLocation: sourceLocation)
        }
    }

    @Test func psqlGetsMaskedRowsAndARefusedDropLeavesTheSessionUsable() throws {
        try withDatabase("pg-psql") { d, cg in
            let r = try psql(cg, """
                SELECT id, name, email, ssn, note FROM customers ORDER BY id;
                DROP TABLE customers;
                SELECT count(*) FROM customers WHERE id > 0;
                SELECT * FROM payroll.salaries;
                """)
            expectNoDatabasePII(r.stdout + r.stderr, "psql's output")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "1|Ada|[EMAIL]|[REDACTED]|card [CREDIT-CARD]", "psql: \(r.stdout) \(r.stderr)")
            #expect(lines.dropFirst().first == "2|Grace|[EMAIL]|[REDACTED]|none")
            // refused with 42501, and the session went on: the next SELECT answered
            #expect(r.stderr.contains("bordergate: DROP is refused by the guardrail 'drop'"), "stderr: \(r.stderr)")
            #expect(lines.contains("2"), "the SELECT after the refused DROP: \(r.stdout)")
            #expect(r.stderr.contains("guardrail 'table payroll.*'"), "stderr: \(r.stderr)")

            let events = d.waitForEvents { all in all.contains { $0.type == .session && $0.process?.cgroup == cg } }
            let guardrail = try #require(events.first { $0.type == .guardrail && $0.process?.cgroup == cg && $0.rule == "drop" })
            #expect(guardrail.verdict == .deny)
            #expect(guardrail.message == "DROP TABLE customers")
            #expect(guardrail.protocol == .postgresql)
            let mask = try #require(events.first { $0.type == .mask && $0.process?.cgroup == cg })
            #expect(mask.masked?["email"] == 2 && mask.masked?["field:ssn"] == 2, "\(mask.masked ?? [:])")
            #expect(events.contains { $0.type == .tls && $0.process?.cgroup == cg && ($0.message ?? "").contains("SSLRequest answered N") })

            // the recording: one session, the startup and every statement normalised
            let session = try #require(events.first { $0.type == .session && $0.process?.cgroup == cg }?.session)
            let show = d.cli("sessions show \(session.id)")
            #expect(show.status == 0, "sessions show: \(show.stderr)")
            #expect(show.stdout.contains("\\connect app alice -- application_name=psql"), "show: \(show.stdout)")
            #expect(show.stdout.contains("SELECT count(*) FROM customers WHERE id > $1;\n--   #"), "show: \(show.stdout)")
            #expect(show.stdout.contains("-> SELECT 1 (1 row)"), "show: \(show.stdout)")
            #expect(show.stdout.contains("DROP TABLE customers;\n--   #"), "show: \(show.stdout)")
            #expect(show.stdout.contains("-> ERROR 42501: DROP is refused by the guardrail 'drop'"), "show: \(show.stdout)")
            #expect(show.stdout.contains("guardrail drop"), "show: \(show.stdout)")
            expectNoDatabasePII(show.stdout, "sessions show")
            #expect(!show.stdout.contains(PostgreSQLServer.password))
            // nothing of the rows, nor the password, anywhere in the daemon's state directory
            for value in databasePII + [PostgreSQLServer.password] {
                let g = Harness.sh("grep -rlaF \(Harness.shellQuote(value)) \(Harness.shellQuote(d.stateDir)) || true")
                #expect(g.stdout.isEmpty, "'\(value)' found in \(g.stdout)")
            }
        }
    }

    @Test func psycopgExtendedProtocolBinaryResultsAndARefusalInATransaction() throws {
        try withDatabase("pg-psycopg") { d, cg in
            let script = """
                import psycopg
                conn = psycopg.connect(host="\(Harness.host4)", port=\(PostgreSQLServer.port), user="alice",
                                       password="\(PostgreSQLServer.password)", dbname="app")
                cur = conn.cursor(binary=True)
                cur.execute("SELECT id, email, ssn FROM customers WHERE id = %s", (1,))
                print("binary", cur.fetchone())
                cur = conn.cursor()
                cur.execute("SELECT id, email FROM customers WHERE email LIKE %s ORDER BY id", ("%@example.org",))
                print("text", cur.fetchall())
                try:
                    cur.execute("TRUNCATE customers")
                    print("truncate ran")
                except psycopg.Error as e:
                    print("refused", e.sqlstate, conn.info.transaction_status.name)
                conn.rollback()
                cur.execute("SELECT count(*) FROM customers")
                print("after", cur.fetchone()[0])
                """
            // Debian's python3-psycopg, with Debian's python (a python3 earlier on PATH lacks it)
            let path = NSTemporaryDirectory() + "bge2e-\(getpid())-\(UUID().uuidString).py"
            try script.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let r = Harness.sh(Harness.inCgroup(cg, "/usr/bin/python3 \(path)"))
            #expect(r.status == 0, "python: \(r.stdout) \(r.stderr)")
            expectNoDatabasePII(r.stdout + r.stderr, "psycopg's output")
            #expect(r.stdout.contains("binary (1, '[EMAIL]', '[REDACTED]')"), "out: \(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("text [(1, '[EMAIL]'), (2, '[EMAIL]')]"), "out: \(r.stdout)")
            #expect(r.stdout.contains("refused 42501 INERROR"), "out: \(r.stdout)")
            #expect(r.stdout.contains("after 2"), "out: \(r.stdout)")
            let events = d.waitForEvents { all in all.contains { $0.type == .session && $0.process?.cgroup == cg } }
            let session = try #require(events.first { $0.type == .session && $0.process?.cgroup == cg }?.session)
            let show = d.cli("sessions show \(session.id)")
            #expect(show.stdout.contains("SELECT id, email FROM customers WHERE email LIKE $1 ORDER BY id;\n--   $1 = '[EMAIL]'"), "show: \(show.stdout)")
            #expect(show.stdout.contains("-> SELECT 2 (2 rows, 2 masked: email 2)"), "show: \(show.stdout)")
            #expect(show.stdout.contains("TRUNCATE customers;\n--   #"), "show: \(show.stdout)")
            #expect(show.stdout.contains("ROLLBACK;\n--   #"), "the client's ROLLBACK after the refusal: \(show.stdout)")
            expectNoDatabasePII(show.stdout, "sessions show")
        }
    }

    @Test func copyOutRowsAreMasked() throws {
        try withDatabase("pg-copy", policy: "db-copy") { _, cg in
            let input = NSTemporaryDirectory() + "bge2e-\(getpid())-copy-in.txt"
            try (1...500).map { "row \($0)\n" }.joined().write(toFile: input, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: input) }
            let r = try psql(cg, """
                \\copy customers TO STDOUT
                \\copy (SELECT id, email FROM big) TO STDOUT WITH (FORMAT csv)
                CREATE TEMP TABLE copied (line text);
                \\copy copied FROM '\(input)'
                SELECT 'copied in: ' || count(*) FROM copied;
                """)
            #expect(r.stdout.contains("copied in: 500"), "COPY IN through the proxy: \(r.stdout.suffix(200)) \(r.stderr)")
            #expect(r.status == 0, "psql: \(r.stderr)")
            expectNoDatabasePII(r.stdout, "COPY's output")
            #expect(r.stdout.contains("1\tAda\t[EMAIL]\t[US-SSN]\tcard [CREDIT-CARD]"), "copy: \(r.stdout.prefix(300))")
            #expect(!r.stdout.contains("user7@example.org"))
            #expect(r.stdout.contains("20000,[EMAIL]"), "every one of 20000 rows streamed: \(r.stdout.suffix(200))")
        }
    }

    @Test func aCancelRequestIsRelayedAndRecordedAgainstItsSession() throws {
        try withDatabase("pg-cancel") { d, cg in
            let script = """
                import psycopg, threading, time
                conn = psycopg.connect(host="\(Harness.host4)", port=\(PostgreSQLServer.port), user="alice",
                                       password="\(PostgreSQLServer.password)", dbname="app", autocommit=True)
                def cancel():
                    time.sleep(1)
                    conn.cancel()
                threading.Thread(target=cancel).start()
                try:
                    conn.execute("SELECT pg_sleep(10)")
                    print("not cancelled")
                except psycopg.errors.QueryCanceled:
                    print("cancelled")
                print("after", conn.execute("SELECT 1").fetchone()[0])
                """
            let path = NSTemporaryDirectory() + "bge2e-\(getpid())-\(UUID().uuidString).py"
            try script.write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let r = Harness.sh(Harness.inCgroup(cg, "/usr/bin/python3 \(path)"))
            #expect(r.stdout.contains("cancelled\nafter 1"), "python: \(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.filter { $0.type == .session && $0.process?.cgroup == cg }.count >= 2 }
            let ids = events.filter { $0.type == .session && $0.process?.cgroup == cg }.compactMap { $0.session?.id }
            let shown = ids.map { ($0, d.cli("sessions show \($0)").stdout) }
            let main = try #require(shown.first { $0.1.contains("pg_sleep") }, "sessions: \(shown.map(\.1))")
            #expect(main.1.contains("ERROR 57014"), "the cancelled statement's outcome: \(main.1)")
            #expect(shown.contains { $0.1.contains("-- cancel request for session \(main.0)") }, "sessions: \(shown.map(\.1))")
        }
    }

    @Test func aReviewedStatementWaitsForApprovalOrIsRefusedWhenNobodyAnswers() throws {
        try withDatabase("pg-review") { d, cg in
            let path = NSTemporaryDirectory() + "bge2e-\(getpid())-review.sql"
            try "ALTER TABLE customers ADD COLUMN IF NOT EXISTS tier int;\nSELECT 'tier ' || count(*) FROM customers WHERE tier IS NULL;\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let out = path + ".out"
            defer { try? FileManager.default.removeItem(atPath: out) }
            let command = Harness.inCgroup(cg, "PGPASSWORD=\(PostgreSQLServer.password) psql -X -At -h \(Harness.host4) -p \(PostgreSQLServer.port) -U alice -d app -f \(path)")
            let pid = try #require(Harness.spawn(["/bin/bash", "-c", command], stdout: out, stderr: out))
            // held: a guardrail event with the request id, and `pending` lists it
            let events = d.waitForEvents { all in all.contains { $0.type == .guardrail && $0.process?.cgroup == cg && $0.request != nil } }
            let held = try #require(events.first { $0.type == .guardrail && $0.process?.cgroup == cg && $0.request != nil })
            #expect(held.verdict == .other("review"))
            let id = try #require(held.request)
            let pending = d.cli("pending")
            #expect(pending.stdout.contains(id) && pending.stdout.contains("ALTER TABLE customers ADD COLUMN IF NOT EXISTS tier int"), "pending: \(pending.stdout) \(pending.stderr)")
            let approve = d.cli("approve \(id) --reason 'CHG-42'")
            #expect(approve.status == 0, "approve: \(approve.stdout) \(approve.stderr)")
            let (status, _) = Harness.wait(pid, timeout: 30)
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(status == 0 && text.contains("ALTER TABLE") && text.contains("tier 2"), "psql: \(text)")
            #expect(d.cli("approve \(id)").status != 0, "an answered request cannot be answered again")
            let approved = d.waitForEvents { all in all.contains { $0.type == .guardrail && $0.request == id && $0.verdict == .pass } }
            #expect(approved.contains { $0.type == .guardrail && $0.request == id && ($0.reason ?? "").contains("CHG-42") })

            // nobody answers: refused after review-timeout (3 s), and the session goes on
            let r = try psql(cg, "ALTER TABLE customers ADD COLUMN IF NOT EXISTS tier2 int;\nSELECT 'still here';\n")
            #expect(r.stderr.contains("needs approval (sql.review: alter), and nobody approved it within 3 s"), "psql: \(r.stderr)")
            #expect(r.stdout.contains("still here"), "psql: \(r.stdout)")
        }
    }

    @Test func aLyingLengthEndsTheConnectionWithAnEventAndTheDaemonGoesOn() throws {
        try withDatabase("pg-lying") { d, cg in
            let script = """
                import socket, struct
                s = socket.create_connection(("\(Harness.host4)", \(PostgreSQLServer.port)), timeout=10)
                params = b"user\\0alice\\0database\\0app\\0\\0"
                s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
                s.recv(4096)  # the server asks for the password
                s.sendall(b"p" + struct.pack("!i", 0x7ffffff0) + b"x" * 16)
                data = b""
                try:
                    while True:
                        chunk = s.recv(4096)
                        if not chunk: break
                        data += chunk
                    print("closed")
                except ConnectionResetError:
                    print("reset")
                """
            let r = try Harness.python(script, inCgroup: cg)
            #expect(r.stdout.contains("closed") || r.stdout.contains("reset"), "python: \(r.stdout) \(r.stderr)")
            let events = d.waitForEvents { all in all.contains { $0.type == .close && $0.process?.cgroup == cg } }
            let close = try #require(events.first { $0.type == .close && $0.process?.cgroup == cg })
            #expect((close.error ?? "").contains("the client sent a 'p' message of length 2147483632, more than the 1024 MiB limit"), "close: \(close)")
            // the daemon is still there, and the next client is served
            #expect(d.cli("status").status == 0)
            let again = try psql(cg, "SELECT name FROM customers WHERE id = 1;")
            #expect(again.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Ada", "psql: \(again.stdout) \(again.stderr)")
        }
    }
}
