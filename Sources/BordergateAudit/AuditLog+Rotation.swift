import Foundation

/// Rotation and retention of the audit log (`audit: {rotate: 100MiB, retain: 90d}`).
///
/// Past `rotate` bytes the next batch goes to a new file: the full one is renamed
/// `events-<last seq, 12 digits>.jsonl` beside it (names sort in chain order) and the new
/// `events.jsonl` starts with a checkpoint that signs the last line of the renamed one and names it
/// (`continues`), so the chain runs on across files and a verifier given only the later files can
/// start from a signed anchor. Retention removes whole rotated files last written before `retain`
/// ago, at each rotation, and says which in a chained `daemon` event right after that checkpoint:
/// a file that is gone without such an event was deleted by someone else.
extension AuditLog {
    public struct Rotation: Sendable, Equatable {
        public var bytes: UInt64
        /// Seconds; nil keeps every rotated file.
        public var retain: Double?

        public init(bytes: UInt64, retain: Double? = nil) {
            self.bytes = bytes
            self.retain = retain
        }
    }

    /// Sets when to rotate and what to keep (nil: one file for ever). Applies from the next batch.
    public func setRotation(_ r: Rotation?) {
        lock.withLock { rotationSettings = r }
    }

    static let rotatedPrefix = "events-"

    /// The rotated files of a log directory in chain order, then the current one: what `audit
    /// verify` checks by default.
    public static func chainFiles(logPath: String) -> [String] {
        let dir = (logPath as NSString).deletingLastPathComponent
        return rotatedFiles(directory: dir).map { dir + "/" + $0 } + [logPath]
    }

    /// The rotated files that may hold events since `since` (all when nil), oldest first: what a
    /// reader of the history reads before the current file. A file last written before `since`
    /// holds nothing newer.
    public static func rotatedHistory(logPath: String, since: Date?) -> [String] {
        let dir = (logPath as NSString).deletingLastPathComponent
        return rotatedFiles(directory: dir).map { dir + "/" + $0 }.filter { path in
            guard let since else { return true }
            var st = stat()
            return stat(path, &st) != 0 || Double(st.st_mtim.tv_sec) + 1 >= since.timeIntervalSince1970
        }
    }

    /// Names of the rotated files in a directory, oldest first.
    static func rotatedFiles(directory dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix(rotatedPrefix) && $0.hasSuffix(".jsonl") && UInt64($0.dropFirst(rotatedPrefix.count).dropLast(6)) != nil }
            .sorted()
    }

    /// The seal of the newest rotated file's last line: where a new `events.jsonl` continues.
    static func lastRotatedSeal(directory dir: String) -> (UInt64, Chain.Value)? {
        guard let last = rotatedFiles(directory: dir).last else { return nil }
        let path = dir + "/" + last
        var st = stat()
        guard stat(path, &st) == 0, let s = try? lastSeal(path: path, size: UInt64(st.st_size)) else { return nil }
        return (s.seq, s.chain)
    }

    /// Takes the file lock on the current file; if another writer rotated the log meanwhile (the
    /// path names another file than ours), follows it to the new file first.
    func lockFile() {
        while true {
            flock(fd, LOCK_EX)
            var mine = stat(), named = stat()
            // no file at the path: removed by hand; keep writing where we are, as before rotation
            guard fstat(fd, &mine) == 0, stat(path, &named) == 0,
                  mine.st_ino != named.st_ino || mine.st_dev != named.st_dev else { return }
            let next = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard next >= 0 else { return }
            flock(fd, LOCK_UN)
            close(fd)
            fd = next
            headAt = .max // re-read the new file's tail
        }
    }

    /// With the lock and the file lock held, and the head current: renames the full file, opens
    /// a new one (locked), removes what retention lets go, and puts the continuation checkpoint
    /// and the retention event into `block` (written with the batch, into the new file).
    func rotate(_ r: Rotation, into block: inout [UInt8], seq: inout UInt64, chain: inout Chain.Value) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let name = Self.rotatedPrefix + String(format: "%012llu", seq) + ".jsonl"
        let target = dir + "/" + name
        guard !FileManager.default.fileExists(atPath: target) else { return } // this seq was rotated already
        fdatasync(fd)
        guard rename(path, target) == 0 else { throw AuditError(.write, path: path, errno: errno, detail: "renaming it to \(target) to rotate it: \(String(cString: strerror(errno)))") }
        let next = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard next >= 0 else { throw AuditError(.open, path: path, errno: errno) }
        flock(next, LOCK_EX)
        flock(fd, LOCK_UN)
        close(fd)
        fd = next
        size = 0
        headAt = 0
        try appendCheckpoint(to: &block, seq: &seq, chain: &chain, continues: name)
        if let retain = r.retain {
            appendRetention(retain, keep: name, to: &block, seq: &seq, chain: &chain)
        }
    }

    /// Removes what retention lets go and puts its chained record into `block` (nothing when
    /// nothing went). With the lock and the file lock held.
    private func appendRetention(_ retain: Double, keep: String?, to block: inout [UInt8], seq: inout UInt64, chain: inout Chain.Value) {
        let dir = (path as NSString).deletingLastPathComponent
        let removed = removeExpired(directory: dir, olderThan: Date().addingTimeInterval(-retain), keep: keep)
        guard !removed.isEmpty else { return }
        let e = AuditEvent(type: .daemon, message: "audit log retention removed \(removed.count) file(s) last written more than \(Self.durationText(retain)) ago: \(removed.joined(separator: ", ")); the oldest file kept starts with a checkpoint that signs the last line before it")
        let start = block.count
        e.appendJSON(to: &block)
        seq += 1
        chain = Chain.seal(&block, from: start, seq: seq, previous: chain)
        block.append(UInt8(ascii: "\n"))
        unsigned += 1
    }

    /// Applies retention now, outside a rotation: a log that seldom rotates still lets old files
    /// go on time (the daemon calls it hourly). Returns the files removed.
    @discardableResult
    public func applyRetention() throws -> [String] {
        lock.lock()
        defer { lock.unlock() }
        guard let retain = rotationSettings?.retain else { return [] }
        lockFile()
        defer { flock(fd, LOCK_UN) }
        var (seq, chain) = try currentHead()
        var block: [UInt8] = []
        appendRetention(retain, keep: nil, to: &block, seq: &seq, chain: &chain)
        guard !block.isEmpty else { return [] }
        _ = try writeChained(block, seq: seq, chain: chain)
        return Self.retentionRecord(block)
    }

    /// The file names a retention record lists (for the caller's log line).
    private static func retentionRecord(_ block: [UInt8]) -> [String] {
        let text = String(decoding: block, as: UTF8.self)
        guard let r = text.range(of: " ago: "), let end = text.range(of: "; the oldest", range: r.upperBound..<text.endIndex) else { return [] }
        return text[r.upperBound..<end.lowerBound].components(separatedBy: ", ")
    }

    /// Removes whole rotated files last modified before `cutoff`, oldest first, stopping at the
    /// first one that is younger (the chain is removed from its start only). Never `keep`.
    func removeExpired(directory dir: String, olderThan cutoff: Date, keep: String?) -> [String] {
        var removed: [String] = []
        for f in Self.rotatedFiles(directory: dir) where f != keep {
            var st = stat()
            guard stat(dir + "/" + f, &st) == 0, Double(st.st_mtim.tv_sec) < cutoff.timeIntervalSince1970 else { break }
            guard unlink(dir + "/" + f) == 0 else { break }
            removed.append(f)
        }
        return removed
    }

    static func durationText(_ t: Double) -> String {
        let s = Int(t)
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] where s % size == 0 && s >= size { return "\(s / size)\(unit)" }
        return "\(s)s"
    }
}
