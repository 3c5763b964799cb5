import Crypto
import Foundation

/// `bordergate audit export`: the events of a period with what it takes to verify them offline,
/// as a .tar.gz made by /usr/bin/tar (every Linux host has it, and verifying needs nothing else).
///
/// `bordergate-evidence/events.jsonl` holds the log's lines from the period's first event to the
/// first checkpoint after its last one (the events between the period's end and that checkpoint
/// are needed to reach the signature); `manifest.json` the seq and chain value of the line before
/// them (the anchor the first line links to), `public.key` the key, `README.md` how to verify.
/// The anchor needs no signature: the checkpoint's signed chain value depends on it and on every line.
public enum EvidenceBundle {
    public struct Manifest: Codable, Sendable {
        public var format = "bordergate-evidence-1"
        public var host: String
        public var created: String
        public var since: String
        public var until: String
        public var events: Int
        public var first_seq: UInt64
        public var last_seq: UInt64
        public var anchor_seq: UInt64
        public var anchor_chain: String
        public var key: String
    }

    private struct Timed: Decodable { var time: String }

    /// Writes a bundle of the events from `since` to `until` in `logFiles` (in order) to `out`.
    public static func export(logFiles: [String], since: Date, until: Date, publicKey: String, to out: String) throws -> Manifest {
        var lines: [(bytes: [UInt8], seal: Chain.Seal, checkpoint: Bool, time: Date?)] = []
        let decoder = JSONDecoder()
        for file in logFiles {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw EvidenceError("cannot read the audit log \(file): run as root or as a member of group bordergate")
            }
            for raw in data.split(separator: UInt8(ascii: "\n")) {
                let bytes = [UInt8](raw)
                guard let seal = bytes.withUnsafeBytes({ Chain.seal(of: $0) }) else { continue }
                let checkpoint = bytes.withUnsafeBytes { Checkpoint.isCheckpoint($0) }
                let time = (try? decoder.decode(Timed.self, from: Data(bytes))).flatMap { AuditTime.parse($0.time) }
                lines.append((bytes, seal, checkpoint, time))
            }
        }
        func inPeriod(_ i: Int) -> Bool {
            guard !lines[i].checkpoint, let t = lines[i].time else { return false }
            return t >= since && t <= until
        }
        guard let first = lines.indices.first(where: inPeriod), let last = lines.indices.last(where: inPeriod) else {
            throw EvidenceError("no events between \(AuditTime.format(since)) and \(AuditTime.format(until)) in \(logFiles.joined(separator: ", "))")
        }
        guard let end = lines.indices.first(where: { $0 > last && lines[$0].checkpoint }) else {
            throw EvidenceError("the period's last events are signed by no checkpoint yet; run as root (export then adds one) or wait for the daemon's next checkpoint (60 s)")
        }
        let anchor = first > 0 ? (lines[first - 1].seal.seq, lines[first - 1].seal.chain) : (0, Chain.Value.genesis)
        let manifest = Manifest(host: ProcessInfo.processInfo.hostName, created: AuditTime.format(Date()),
                                since: AuditTime.format(since), until: AuditTime.format(until),
                                events: (first...last).filter { !lines[$0].checkpoint }.count,
                                first_seq: lines[first].seal.seq, last_seq: lines[end].seal.seq,
                                anchor_seq: anchor.0, anchor_chain: anchor.1.hex, key: publicKey)
        let tmp = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let dir = tmp + "/bordergate-evidence"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var events: [UInt8] = []
        for i in first...end { events.append(contentsOf: lines[i].bytes); events.append(UInt8(ascii: "\n")) }
        try Data(events).write(to: URL(fileURLWithPath: dir + "/events.jsonl"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(manifest).write(to: URL(fileURLWithPath: dir + "/manifest.json"))
        try (publicKey + "\n").write(toFile: dir + "/public.key", atomically: true, encoding: .utf8)
        try readme(manifest).write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        try tar(["-czf", out, "-C", tmp, "bordergate-evidence"])
        return manifest
    }

    /// Verifies a bundle with `key`, or with the key it carries when nil (which proves only that
    /// the bundle is whole: compare that key with the host's `bordergate audit key`).
    public static func verify(bundle: String, key: Curve25519.Signing.PublicKey?) throws -> (LogVerifier.Report, Manifest) {
        guard FileManager.default.fileExists(atPath: bundle) else { throw EvidenceError("no bundle at \(bundle)") }
        let tmp = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try tar(["-xzf", bundle, "-C", tmp])
        let dir = tmp + "/bordergate-evidence"
        guard let data = FileManager.default.contents(atPath: dir + "/manifest.json"),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data),
              let anchor = Chain.Value(hex: manifest.anchor_chain) else {
            throw EvidenceError("\(bundle) is not a Bordergate evidence bundle (no readable bordergate-evidence/manifest.json)")
        }
        let key = try key ?? SigningKey.parsePublic(manifest.key)
        var verifier = LogVerifier(key: key, anchor: (manifest.anchor_seq, anchor))
        verifier.requireSignedEnd = true
        guard let events = FileManager.default.contents(atPath: dir + "/events.jsonl") else {
            throw EvidenceError("\(bundle) has no bordergate-evidence/events.jsonl")
        }
        verifier.verify(data: events, name: "events.jsonl")
        var report = verifier.finish()
        if report.lastSeq != manifest.last_seq, report.ok {
            report.problems.append(.init(file: "events.jsonl", line: 0, kind: .truncated,
                                         message: "the bundle ends at seq \(report.lastSeq ?? 0) but its manifest says \(manifest.last_seq)"))
        }
        return (report, manifest)
    }

    static func makeTemporaryDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/bordergate-bundle-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw EvidenceError("cannot make a temporary directory: \(String(cString: strerror(errno)))") }
        return String(cString: p)
    }

    static func tar(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        do { try p.run() } catch { throw EvidenceError("cannot run /usr/bin/tar: \(error); install tar") }
        let msg = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw EvidenceError("tar \(args.joined(separator: " ")) failed: \(String(decoding: msg, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    static func readme(_ m: Manifest) -> String {
        """
        # Bordergate audit evidence

        Host \(m.host), events from \(m.since) to \(m.until) (\(m.events) events, seq \(m.first_seq)…\(m.last_seq)),
        exported \(m.created).

        - `events.jsonl`: the audit log's lines as written, from the period's first event to the first
          signed checkpoint after its last (events after the period up to that checkpoint are included:
          the signature covers them).
        - `manifest.json`: the period, and `anchor_seq`/`anchor_chain`, the line before the first one.
        - `public.key`: the Ed25519 key that signed the checkpoints (\(m.key)).

        Verify, on any host, offline:

            bordergate audit verify --bundle THIS.tar.gz --key \(m.key)

        Compare the key with what `bordergate audit key` prints on the host (or with a copy kept
        elsewhere): without `--key` the bundle is checked against the key it carries, which proves it
        is whole but not who made it.

        By hand: every line ends in `,"seq":N,"chain":"<hex>"}`. Its canonical bytes are the line
        with the `,"chain":"<hex>"` member cut out; `chain` = SHA-256(previous chain as 32 bytes ||
        canonical bytes), starting from `anchor_chain`; `seq` goes up by one per line. A line of type
        `checkpoint` signs, with Ed25519, the UTF-8 text `bordergate checkpoint v1\\n<seq>\\n<chain>\\n`
        of the line before it (`signs` in the line, `signature` in base64).

        """
    }
}
