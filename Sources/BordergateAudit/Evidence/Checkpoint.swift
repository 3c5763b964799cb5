import Crypto
import Foundation

/// The Ed25519 key that signs checkpoints: `signing.key` beside the log (0600, the raw 32-byte
/// private key in base64), made on first use; `signing.pub` beside it holds the public key for
/// readers who may not read the private one.
public enum SigningKey {
    public static func privatePath(forLogDirectory dir: String) -> String { dir + "/signing.key" }
    public static func publicPath(forLogDirectory dir: String) -> String { dir + "/signing.pub" }

    /// Loads the key, making it (and `signing.pub`) when there is none yet.
    public static func loadOrCreate(directory dir: String) throws -> Curve25519.Signing.PrivateKey {
        let path = privatePath(forLogDirectory: dir)
        if let key = try load(path: path) { return key }
        let key = Curve25519.Signing.PrivateKey()
        // O_EXCL: a daemon and an exec starting together must not each make their own key
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == EEXIST, let other = try load(path: path) { return other }
            throw EvidenceError("cannot create the checkpoint signing key \(path): \(String(cString: strerror(errno))): run as root, or use a writable state directory")
        }
        let text = Array((key.rawRepresentation.base64EncodedString() + "\n").utf8)
        let n = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        guard n == text.count else { throw EvidenceError("cannot write the checkpoint signing key \(path)") }
        let pub = publicPath(forLogDirectory: dir)
        try? (format(key.publicKey) + "\n").write(toFile: pub, atomically: true, encoding: .utf8)
        chmod(pub, 0o644)
        return key
    }

    static func load(path: String) throws -> Curve25519.Signing.PrivateKey? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw EvidenceError("cannot read the checkpoint signing key \(path): permission denied; run as root")
        }
        guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw EvidenceError("\(path) is not a Bordergate signing key (base64 of 32 bytes); move it away to make a new one, which starts a new chain of trust")
        }
        return key
    }

    /// `ed25519:` and the base64 of the 32-byte public key.
    public static func format(_ key: Curve25519.Signing.PublicKey) -> String {
        "ed25519:" + key.rawRepresentation.base64EncodedString()
    }

    /// Parses what ``format(_:)`` prints (the `ed25519:` prefix is optional), or reads it from a file.
    public static func parsePublic(_ text: String) throws -> Curve25519.Signing.PublicKey {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if !s.hasPrefix("ed25519:"), FileManager.default.fileExists(atPath: s) {
            guard let contents = try? String(contentsOfFile: s, encoding: .utf8) else {
                throw EvidenceError("cannot read the public key file \(s)")
            }
            s = contents.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if s.hasPrefix("ed25519:") { s.removeFirst(8) }
        guard let raw = Data(base64Encoded: s), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw EvidenceError("\(text) is not a public key: give what `bordergate audit key` prints (ed25519:<base64>) or a file holding it")
        }
        return key
    }

    /// The key that verifies a state directory's log: from `signing.key` if readable, else `signing.pub`.
    public static func publicKey(forLogDirectory dir: String) throws -> Curve25519.Signing.PublicKey {
        if let key = try? load(path: privatePath(forLogDirectory: dir)) { return key.publicKey }
        let pub = publicPath(forLogDirectory: dir)
        guard FileManager.default.fileExists(atPath: pub) else {
            throw EvidenceError("no signing key in \(dir): the daemon makes one when it first writes the log; give the host's public key")
        }
        return try parsePublic(pub)
    }
}

/// A checkpoint: a chained line whose signature covers the seq and chain value of the line
/// before it, so a chain recomputed by someone without the key no longer matches.
///
/// `{"time":…,"id":…,"type":"checkpoint","signs":{"seq":S,"chain":"<hex>"},"key":"ed25519:…","signature":"<base64>","seq":S+1,"chain":…}`
///
/// The signed message is the UTF-8 text `bordergate checkpoint v1\n<S>\n<hex chain>\n`.
public enum Checkpoint {
    public static func message(seq: UInt64, chain: Chain.Value) -> Data {
        Data("bordergate checkpoint v1\n\(seq)\n\(chain.hex)\n".utf8)
    }

    /// Appends an unsealed checkpoint line (ending in `}`) for `seq`/`chain` to `out`.
    static func appendJSON(signing seq: UInt64, chain: Chain.Value, key: Curve25519.Signing.PrivateKey,
                           publicKey: String, continues: String? = nil, time: Date = Date(), to out: inout [UInt8]) throws {
        let signature = try key.signature(for: message(seq: seq, chain: chain))
        var w = JSONWriter(out: out)
        out = []
        w.open()
        w.time("time", time)
        w.field("id", AuditEvent.newID(now: time))
        w.field("type", AuditEvent.Kind.checkpoint.rawValue)
        w.key("signs")
        w.open()
        w.field("seq", seq)
        w.field("chain", chain.hex)
        w.close()
        w.field("key", publicKey)
        w.field("signature", signature.base64EncodedString())
        // the first line of a file after a rotation: the file whose last line it signs
        if let continues { w.field("continues", continues) }
        w.close()
        out = w.bytes
    }

    /// The fields a verifier reads from a checkpoint line.
    public struct Fields: Decodable {
        public struct Signs: Decodable { public var seq: UInt64; public var chain: String }
        public var type: String
        public var signs: Signs?
        public var key: String?
        public var signature: String?
        /// Set on the first line of a file after a rotation: the file before it.
        public var continues: String?
    }

    /// Whether a line is a checkpoint, looked up without decoding it: `type` is the third field.
    static func isCheckpoint(_ line: UnsafeRawBufferPointer) -> Bool {
        guard let base = line.baseAddress else { return false }
        // memchr and memcmp at each comma: this runs for every line a verifier reads
        let window = min(line.count, 160)
        return checkpointNeedle.withUnsafeBytes { n in
            var at = 0
            while at + n.count <= window, let comma = memchr(base + at, 0x2c, window - at) {
                let i = comma - UnsafeMutableRawPointer(mutating: base)
                if i + n.count <= window, memcmp(comma, n.baseAddress!, n.count) == 0 { return true }
                at = i + 1
            }
            return false
        }
    }

    private static let checkpointNeedle = Array(#","type":"checkpoint","#.utf8)
}
