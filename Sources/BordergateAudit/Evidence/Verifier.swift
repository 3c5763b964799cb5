import Crypto
import Foundation

/// Checks chained audit logs (README, "Evidence"): every link, every gap in `seq`, every
/// checkpoint's signature, and the log against the last checkpoint recorded beside it.
///
/// Files are fed in order with ``verify(file:)``; the chain continues from one to the next.
/// After a problem the verifier continues from the line it stopped at, so one tampering is
/// named once, at its first broken link.
public struct LogVerifier {
    public struct Finding: Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            case edited, deleted, reordered, unchained, truncated, rechained, unreadable
            case forgedCheckpoint = "forged-checkpoint"
            case unsignedTail = "unsigned-tail"
        }
        public var file: String
        public var line: Int
        public var kind: Kind
        public var message: String
        public var description: String { "\(file):\(line): \(kind.rawValue): \(message)" }
    }

    public struct Report: Sendable {
        public var problems: [Finding] = []
        /// What is worth knowing but proves no tampering (torn lines, events not signed yet).
        public var notes: [String] = []
        public var events = 0
        public var checkpoints = 0
        public var lastSeq: UInt64?
        public var ok: Bool { problems.isEmpty }
    }

    public let key: Curve25519.Signing.PublicKey
    /// More events than this after the last checkpoint cannot come from a writer that signs every
    /// `checkpointEvery` events: checkpoints were removed.
    public var maxUnsigned = 1000
    /// A bundle must end in a checkpoint; a live log may end in events not signed yet.
    public var requireSignedEnd = false

    private var previous: (seq: UInt64, chain: Chain.Value)?
    private var started = false
    private var report = Report()
    private var legacy = 0
    /// Where the first of them is.
    private var firstLegacy: (file: String, line: Int)?
    private var unsigned = 0
    private var firstUnsigned: (file: String, line: Int)?
    private var lastLine: (file: String, line: Int) = ("", 0)
    private var head: (line: [UInt8], seq: UInt64, source: String)?
    private var headSeen: Bool?
    /// The first file verified continues a rotated one that was not given (retention removed it,
    /// or someone did): the file it names and where; a retention event naming it settles it.
    private var startsAfter: (name: [UInt8], file: String, line: Int)?
    private let decoder = JSONDecoder()

    /// `anchor`: the seq and chain value of the line before the first one verified (a bundle
    /// starts mid-log); nil for a log that starts at seq 1.
    public init(key: Curve25519.Signing.PublicKey, anchor: (seq: UInt64, chain: Chain.Value)? = nil) {
        self.key = key
        if let anchor { previous = anchor; started = true }
    }

    /// The last checkpoint the writer recorded beside the log (``AuditLog/headPath``): the log
    /// must hold that very line, or its tail was cut off.
    public mutating func expectHead(path: String) {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        var line = Array(data)
        while line.last == UInt8(ascii: "\n") { line.removeLast() }
        let seal = line.withUnsafeBytes { Chain.seal(of: $0) }
        guard let seal, line.withUnsafeBytes({ Checkpoint.isCheckpoint($0) }) else {
            problem(path, 1, .unreadable, "not a checkpoint line; the last checkpoint cannot be compared with the log")
            return
        }
        if let why = checkSignature(line) {
            problem(path, 1, .forgedCheckpoint, why)
            return
        }
        head = (line, seal.seq, path)
    }

    public mutating func verify(file path: String) {
        guard let data = FileManager.default.contents(atPath: path) else {
            problem(path, 0, .unreadable, "cannot read the file (missing, or permission denied: run as root or as a member of group bordergate)")
            return
        }
        verify(data: data, name: path)
    }

    public mutating func verify(data: Data, name: String) {
        let bytes = [UInt8](data)
        // line ranges first: telling a reordering from a deletion looks ahead for the missing seq
        var lines: [Range<Int>] = []
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var start = 0
            while start < raw.count {
                // memchr: a log is millions of bytes
                let end = memchr(base + start, 0x0a, raw.count - start).map { $0 - UnsafeMutableRawPointer(mutating: base) } ?? raw.count
                lines.append(start..<end)
                start = end + 1
            }
        }
        bytes.withUnsafeBytes { raw in
            for (index, range) in lines.enumerated() where !range.isEmpty {
                let line = UnsafeRawBufferPointer(rebasing: raw[range])
                check(line, file: name, number: index + 1) { seq in
                    for j in (index + 1)..<lines.count {
                        let r = lines[j]
                        if let s = Chain.seal(of: UnsafeRawBufferPointer(rebasing: raw[r])), s.seq == seq { return j + 1 }
                    }
                    return nil
                }
            }
        }
    }

    private mutating func check(_ line: UnsafeRawBufferPointer, file: String, number: Int, findLater: (UInt64) -> Int?) {
        lastLine = (file, number)
        guard let seal = Chain.seal(of: line) else {
            if (try? JSONSerialization.jsonObject(with: Data(line))) == nil {
                report.notes.append("\(file):\(number): not a whole JSON line (torn by a crash), skipped")
            } else if !started {
                legacy += 1
                if firstLegacy == nil { firstLegacy = (file, number) }
            } else {
                problem(file, number, .unchained, "an event without seq and chain inside the chained log: inserted, or its seal removed")
            }
            return
        }
        if !started, seal.seq > 1, let anchor = rotationAnchor(line, seq: seal.seq) {
            // the signed checkpoint that starts a rotated file names the last line before it
            previous = (anchor.seq, anchor.chain)
            startsAfter = (Array(anchor.file.utf8), file, number)
            report.notes.append("\(file):\(number): the log starts at seq \(seal.seq), after \(anchor.file) (seq \(anchor.seq)), which was not given")
        }
        if let after = startsAfter, after.name.count > 0, Self.contains(line, Self.retentionWords),
           Self.isRetentionRecord(line, naming: String(decoding: after.name, as: UTF8.self)) {
            startsAfter = nil // removed by retention, and on record
        }
        let (expected, before) = previous.map { ($0.seq + 1, $0.chain) } ?? (1, .genesis)
        let isFirst = !started
        started = true
        defer { previous = (seal.seq, seal.chain) }
        if seal.seq != expected {
            if seal.seq > expected {
                if let later = findLater(expected) {
                    problem(file, number, .reordered, "seq \(seal.seq) where seq \(expected) belongs; seq \(expected) is at line \(later): lines were moved")
                } else if isFirst {
                    problem(file, number, .deleted, "the log starts at seq \(seal.seq): seq 1…\(seal.seq - 1) are missing (deleted from its start)")
                } else {
                    let range = seal.seq - 1 == expected ? "seq \(expected) is" : "seq \(expected)…\(seal.seq - 1) are"
                    problem(file, number, .deleted, "\(range) missing before this line: \(seal.seq - expected) event(s) deleted")
                }
            } else {
                problem(file, number, .reordered, "seq \(seal.seq) after seq \(expected - 1): lines were moved or duplicated")
            }
            return
        }
        let computed = Chain.link(previous: before, body: UnsafeRawBufferPointer(rebasing: line[0..<seal.bodyEnd]))
        if computed != seal.chain {
            problem(file, number, .edited, "seq \(seal.seq) does not hash to its chain value: the event (or its chain) was changed")
            return
        }
        report.events += 1
        report.lastSeq = seal.seq
        if let head, head.seq == seal.seq { headSeen = line.elementsEqual(head.line) }
        if Checkpoint.isCheckpoint(line) {
            report.events -= 1
            if let why = checkSignature(Array(line)) {
                problem(file, number, .forgedCheckpoint, why)
                return
            }
            if let f = try? decoder.decode(Checkpoint.Fields.self, from: Data(line)), let signs = f.signs,
               signs.seq != seal.seq - 1 || signs.chain != before.hex {
                problem(file, number, .rechained, "this checkpoint signs seq \(signs.seq) with chain \(signs.chain.prefix(12))… but the chain before it is seq \(seal.seq - 1) with \(before.hex.prefix(12))…: events before it were rewritten and re-chained")
                return
            }
            report.checkpoints += 1
            unsigned = 0
            firstUnsigned = nil
        } else {
            unsigned += 1
            if firstUnsigned == nil { firstUnsigned = (file, number) }
        }
    }

    /// The anchor a rotated file's first line gives: a checkpoint with `continues`, signed, that
    /// signs the seq right before its own.
    private func rotationAnchor(_ line: UnsafeRawBufferPointer, seq: UInt64) -> (seq: UInt64, chain: Chain.Value, file: String)? {
        guard Checkpoint.isCheckpoint(line), let f = try? decoder.decode(Checkpoint.Fields.self, from: Data(line)),
              let name = f.continues, let signs = f.signs, signs.seq + 1 == seq, let chain = Chain.Value(hex: signs.chain),
              checkSignature(Array(line)) == nil else { return nil }
        return (signs.seq, chain, name)
    }

    static let retentionWords = Array("audit log retention removed".utf8)

    /// Whether `line` is the writer's own retention record (a `daemon` event with no process,
    /// whose message lists the removed files) and lists `name` exactly: words a tool put into
    /// another event (an executable's path, a hostname) are no record.
    static func isRetentionRecord(_ line: UnsafeRawBufferPointer, naming name: String) -> Bool {
        guard let e = try? AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line)),
              e.type == .daemon, e.process == nil, e.destination == nil,
              let message = e.message, message.hasPrefix("audit log retention removed "),
              let listStart = message.range(of: " ago: "),
              let listEnd = message.range(of: "; the oldest file kept", range: listStart.upperBound..<message.endIndex) else { return false }
        let names = message[listStart.upperBound..<listEnd.lowerBound].components(separatedBy: ", ")
        return names.contains(name)
    }

    static func contains(_ line: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard let base = line.baseAddress, needle.count <= line.count else { return false }
        // memchr for the first byte, then memcmp (glibc's memmem needs _GNU_SOURCE)
        return needle.withUnsafeBytes { n in
            var at = 0
            while at + n.count <= line.count, let hit = memchr(base + at, Int32(n[0]), line.count - at - n.count + 1) {
                if memcmp(hit, n.baseAddress!, n.count) == 0 { return true }
                at = hit - UnsafeMutableRawPointer(mutating: base) + 1
            }
            return false
        }
    }

    /// Why a checkpoint line's signature does not hold, or nil when it does.
    private func checkSignature(_ line: [UInt8]) -> String? {
        guard let f = try? decoder.decode(Checkpoint.Fields.self, from: Data(line)), let signs = f.signs,
              let sig = f.signature.flatMap({ Data(base64Encoded: $0) }), let chain = Chain.Value(hex: signs.chain) else {
            return "a checkpoint without signs/signature fields"
        }
        guard key.isValidSignature(sig, for: Checkpoint.message(seq: signs.seq, chain: chain)) else {
            return "the signature over seq \(signs.seq) does not verify with key \(SigningKey.format(key)): forged, or signed by another key"
        }
        return nil
    }

    private mutating func problem(_ file: String, _ line: Int, _ kind: Finding.Kind, _ message: String) {
        report.problems.append(Finding(file: file, line: line, kind: kind, message: message))
    }

    /// Ends the verification: the unsigned tail and the recorded last checkpoint.
    public mutating func finish() -> Report {
        if let after = startsAfter {
            problem(after.file, after.line, .deleted, "the log continues from \(String(decoding: after.name, as: UTF8.self)), which was not given and which no retention event records removing: give it before this file, or it was deleted")
        }
        if legacy > 0, let first = firstLegacy {
            // Lines ahead of the chain could have been there before Bordergate chained its log, or
            // have been put there since: nothing tells which, so they fail the verification.
            problem(first.file, first.line, .unchained,
                    "\(legacy) line(s) ahead of the chain's first line carry no seq and chain: written before the log was chained, or inserted since; they are not evidence (move them out to verify the rest)")
        }
        if let head, headSeen != true {
            if headSeen == false {
                problem(head.source, 1, .edited, "the log's line with seq \(head.seq) differs from this last checkpoint")
            } else if (report.lastSeq ?? 0) < head.seq {
                problem(lastLine.file, lastLine.line, .truncated, "the log ends at seq \(report.lastSeq ?? 0) but the last checkpoint (\(head.source)) is seq \(head.seq): its tail was cut off")
            } else {
                problem(head.source, 1, .deleted, "the log has no line with seq \(head.seq), the last checkpoint's")
            }
        }
        if unsigned > 0, let first = firstUnsigned {
            if requireSignedEnd {
                problem(first.file, first.line, .unsignedTail, "\(unsigned) event(s) from here on are signed by no checkpoint")
            } else if unsigned > maxUnsigned {
                problem(first.file, first.line, .unsignedTail, "\(unsigned) event(s) from here on are signed by no checkpoint, more than one checkpoint interval (\(maxUnsigned)): checkpoints were removed")
            } else {
                report.notes.append("\(first.file):\(first.line): the last \(unsigned) event(s) are chained but not signed yet (the writer signs them at its next checkpoint, within 60 s or \(maxUnsigned) events, and when it stops)")
            }
        }
        return report
    }
}
