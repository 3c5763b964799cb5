import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// Python that re-chains a log from a line on (`rechain.py FILE FIRST_LINE`), as anyone
    /// without the key could: an implementation of the canonical form of its own (README, "Evidence").
    static let rechainPython = #"""
        import hashlib, sys
        path, first = sys.argv[1], int(sys.argv[2])
        lines = open(path, "rb").read().split(b"\n")
        lines = [l for l in lines if l]
        prev = bytes(32) if first == 1 else bytes.fromhex(lines[first - 2][-66:-2].decode())
        for i in range(first - 1, len(lines)):
            body = lines[i][:-76]
            assert lines[i][-76:-66] == b',"chain":"'
            prev = hashlib.sha256(prev + body + b"}").digest()
            lines[i] = body + b',"chain":"' + prev.hex().encode() + b'"}'
        open(path, "wb").write(b"\n".join(lines) + b"\n")
        """#

    /// Makes `count` connections from the guarded cgroup, each opened and closed.
    func connections(_ count: Int, in cg: String) throws -> Harness.ShellResult {
        try Harness.python("""
            import socket
            for i in range(\(count)):
                s = socket.create_connection(("\(Harness.host4)", 80), timeout=10)
                s.close()
            print("done")
            """, inCgroup: cg)
    }

    @Test func auditVerifyNamesEachKindOfTamperingWithADaemonsLog() throws {
        try withOwnDaemon("evidence", port: 17_420) { d, cg in
            // more than 1000 events: a checkpoint inside the log, and one when the daemon stops
            #expect(try connections(300, in: cg).stdout.contains("done"))
            d.stop()
            try d.start() // the chain continues across a restart
            #expect(try connections(300, in: cg).stdout.contains("done"))
            d.stop()
            let audit = d.stateDir + "/audit"
            let ok = d.cli("audit verify")
            #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
            #expect(ok.stdout.contains("ok: "), "\(ok.stdout)")
            let key = d.cli("audit key").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let pub = try String(contentsOfFile: audit + "/signing.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(key.hasPrefix("ed25519:") && key == pub, "\(key) \(pub)")
            let original = try String(contentsOfFile: audit + "/events.jsonl", encoding: .utf8)
            let lines = original.split(separator: "\n").map(String.init)
            let seqs = lines.compactMap { l in l.range(of: #","seq":"#).map { Int(l[$0.upperBound...].prefix { $0.isNumber })! } }
            #expect(seqs == Array(1...seqs.count), "seq is gap-free across the restart")
            let checkpointLines = lines.indices.filter { lines[$0].contains(#""type":"checkpoint""#) }
            #expect(checkpointLines.count >= 2)
            let connect = try #require(lines.indices.first { lines[$0].contains(#""type":"connect""#) && $0 > 20 })

            let rechain = d.stateDir + "/rechain.py"
            try Self.rechainPython.write(toFile: rechain, atomically: true, encoding: .utf8)
            func tampered(_ name: String, _ change: (inout [String]) -> Void, rechainFrom: Int? = nil) throws -> Harness.ShellResult {
                let dir = "\(d.stateDir)/tampered-\(name)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                for f in ["checkpoint.json", "signing.pub"] { try FileManager.default.copyItem(atPath: "\(audit)/\(f)", toPath: "\(dir)/\(f)") }
                var copy = lines
                change(&copy)
                try (copy.joined(separator: "\n") + "\n").write(toFile: dir + "/events.jsonl", atomically: true, encoding: .utf8)
                if let from = rechainFrom { #expect(Harness.sh("python3 \(rechain) \(dir)/events.jsonl \(from)").status == 0) }
                return d.cli("audit verify --key \(key) \(dir)/events.jsonl")
            }
            func expectNamed(_ r: Harness.ShellResult, _ name: String, line: Int, _ kind: String) {
                #expect(r.status == 1, "\(name): \(r.stdout) \(r.stderr)")
                #expect(r.stdout.contains("FAILED: \(d.stateDir)/tampered-\(name)/events.jsonl:\(line): \(kind):"), "\(name): \(r.stdout)")
            }
            // the verifier's canonical form is Python's: re-chaining the untouched log changes nothing
            let same = try tampered("same", { _ in }, rechainFrom: 1)
            #expect(same.status == 0, "\(same.stdout)")

            expectNamed(try tampered("edited") { $0[connect] = $0[connect].replacingOccurrences(of: #""verdict":"redirect""#, with: #""verdict":"pass""#) },
                        "edited", line: connect + 1, "edited")
            expectNamed(try tampered("deleted") { $0.remove(at: connect) }, "deleted", line: connect + 1, "deleted")
            expectNamed(try tampered("reordered") { $0.swapAt(connect, connect + 2) }, "reordered", line: connect + 1, "reordered")
            let cut = lines.count - 40
            let truncated = try tampered("truncated") { $0.removeLast(40) }
            #expect(truncated.status == 1 && truncated.stdout.contains("tampered-truncated/events.jsonl:\(cut): truncated:"), "\(truncated.stdout)")
            let cp = checkpointLines[0]
            expectNamed(try tampered("forged", { l in
                let at = l[cp].range(of: #""signature":""#)!.upperBound
                l[cp].replaceSubrange(at...at, with: l[cp][at] == "A" ? "B" : "A")
            }, rechainFrom: cp + 1), "forged", line: cp + 1, "forged-checkpoint")
            expectNamed(try tampered("rechained", { $0[connect] = $0[connect].replacingOccurrences(of: #""port":80"#, with: #""port":81"#) },
                                     rechainFrom: connect + 1), "rechained",
                        line: checkpointLines.first { $0 > connect }! + 1, "rechained")

            // an export of the period verifies after it moved, offline
            let bundle = d.stateDir + "/evidence.tar.gz"
            let export = d.cli("audit export --since 10m --out \(bundle)")
            #expect(export.status == 0, "\(export.stdout) \(export.stderr)")
            let moved = "/tmp/bge2e-evidence-moved-\(getpid()).tar.gz"
            defer { unlink(moved) }
            #expect(rename(bundle, moved) == 0)
            let listing = Harness.sh("tar -tzf \(moved)").stdout
            for f in ["events.jsonl", "manifest.json", "public.key", "README.md"] { #expect(listing.contains("bordergate-evidence/\(f)"), "\(listing)") }
            let verified = Harness.sh("\(Harness.binary) audit verify --bundle \(moved) --key \(key)")
            #expect(verified.status == 0, "\(verified.stdout) \(verified.stderr)")
            #expect(verified.stdout.contains("ok: bundle"), "\(verified.stdout)")
        }
    }

    @Test func aDaemonKilledDuringAConnectionLoopLeavesALogThatVerifies() throws {
        try withOwnDaemon("evidence-kill", port: 17_421) { d, cg in
            let script = d.stateDir + "/loop.py"
            try """
                import socket, time
                end = time.time() + 20
                while time.time() < end:
                    try:
                        socket.create_connection(("\(Harness.host4)", 80), timeout=2).close()
                    except OSError:
                        time.sleep(0.01)
                """.write(toFile: script, atomically: true, encoding: .utf8)
            let loop = Harness.spawn(["/bin/bash", "-c", Harness.inCgroup(cg, "python3 \(script)")], stdout: "/dev/null", stderr: "/dev/null")
            defer { if let loop { kill(loop, SIGKILL); _ = Harness.wait(loop, timeout: 10) } }
            // kill it while events stream in
            _ = d.waitForEvents(timeout: 15) { $0.connects().count > 1500 }
            d.stop(signal: SIGKILL)
            let r = d.cli("audit verify")
            #expect(r.status == 0, "the surviving log verifies: \(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("checkpoints"), "\(r.stdout)")
            // a restarted daemon continues the chain from what survived
            try d.start()
            usleep(1_000_000) // the loop's connections go through again
            d.stop()
            let after = d.cli("audit verify")
            #expect(after.status == 0, "\(after.stdout) \(after.stderr)")
            #expect(!after.stdout.contains("not signed yet"), "a stopped daemon signs its tail: \(after.stdout)")
        }
    }
}
