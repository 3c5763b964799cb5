import Crypto
import Foundation

/// The durable audit log: one JSON event per line, appended to a file in the state directory.
///
/// Events are written as they happen (the hub writes what gathered within a few milliseconds with one
/// `write(2)`), so they survive a crash of the daemon;
/// `fdatasync` runs on a short timer rather than per event, so a burst of 20,000 connections a
/// second costs one flush, not 20,000. A line torn by a crash is terminated on the next open and
/// skipped by readers, so it never glues itself to the next event.
///
/// Events written with ``appendEvents(_:into:lines:)`` are chained (``Chain``): each line carries
/// `seq` and `chain`, continued from the file's last chained line when the log is opened, and
/// every `checkpointEvery` events or `checkpointInterval` a ``Checkpoint`` signed with the key
/// beside the log is added. Writers of one file take an `flock` per batch and re-read the tail when
/// the file grew under them, so a daemon and an `exec` sharing a state directory keep one chain.
public final class AuditLog: @unchecked Sendable {
    public let path: String
    /// Replaced when the log rotates (AuditLog+Rotation.swift).
    var fd: Int32
    let lock = NSLock()
    var size: UInt64
    private var dirty = false
    private var syncTimer: DispatchSourceTimer?
    let signingKey: Curve25519.Signing.PrivateKey
    private let publicKeyText: String
    let checkpointEvery: Int
    private let checkpointInterval: Duration
    /// The last chained line: its seq and chain value; nil until read from the file's tail.
    var head: (seq: UInt64, chain: Chain.Value)?
    /// The file size `head` was read at or written to: a different size means another writer.
    var headAt: UInt64 = .max
    /// Chained events since the last checkpoint, and when that was.
    var unsigned = 0
    var lastCheckpoint = ContinuousClock.now
    /// When to move to a new file and which old files to remove (`audit:` in the config); set by
    /// the daemon, read with the lock held.
    var rotationSettings: Rotation?

    /// The public key that verifies this log's checkpoints (`ed25519:<base64>`).
    public var publicKey: String { publicKeyText }
    /// Where the last checkpoint is copied after it is written: a verifier compares the log with
    /// it to see a tail cut off after that checkpoint.
    public var headPath: String { Self.headPath(forLogDirectory: (path as NSString).deletingLastPathComponent) }
    /// The seq of the last line this writer put in the log (0 before its first), for the lag
    /// of what reads the log behind it (the fleet export).
    public var lastWrittenSeq: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return head?.seq ?? 0
    }
    public static func headPath(forLogDirectory dir: String) -> String { dir + "/checkpoint.json" }

    public init(path: String, syncInterval: Duration = .milliseconds(200), checkpointEvery: Int = 1000,
                checkpointInterval: Duration = .seconds(60)) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o750])
        } catch {
            throw AuditError(.createStateDirectory, path: dir, detail: error.localizedDescription)
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw AuditError(.open, path: path, errno: errno)
        }
        self.fd = fd
        do {
            signingKey = try SigningKey.loadOrCreate(directory: dir)
        } catch {
            close(fd)
            throw error
        }
        publicKeyText = SigningKey.format(signingKey.publicKey)
        self.checkpointEvery = max(1, checkpointEvery)
        self.checkpointInterval = checkpointInterval
        var st = stat()
        fstat(fd, &st)
        size = UInt64(st.st_size)
        if size > 0, Self.lastByte(path: path) != UInt8(ascii: "\n") {
            _ = "\n".withCString { write(fd, $0, 1) }
            size += 1
        }
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "bordergate.audit.sync"))
        let ms = Int(syncInterval.components.seconds * 1000 + syncInterval.components.attoseconds / 1_000_000_000_000_000)
        timer.schedule(deadline: .now() + .milliseconds(ms), repeating: .milliseconds(ms))
        timer.setEventHandler { [weak self] in
            self?.checkpointIfDue()
            self?.syncIfDirty()
        }
        timer.resume()
        syncTimer = timer
    }

    deinit {
        syncTimer?.cancel()
        fdatasync(fd)
        close(fd)
    }

    private static func lastByte(path: String) -> UInt8? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        guard let end = try? h.seekToEnd(), end > 0 else { return nil }
        try? h.seek(toOffset: end - 1)
        return (try? h.read(upToCount: 1))?.first
    }

    /// Appends one line (a newline is added). Returns the file size after the write: everything
    /// before that offset is history.
    @discardableResult
    public func append(_ line: Data) throws -> UInt64 {
        var data = line
        data.append(UInt8(ascii: "\n"))
        return try data.withUnsafeBytes { try appendBlock($0) }
    }

    /// Appends whole lines (each ending in a newline) with one write. Returns the size after it.
    @discardableResult
    public func appendBlock(_ raw: UnsafeRawBufferPointer) throws -> UInt64 {
        guard raw.count > 0 else { return currentSize }
        return try lock.withLock {
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw AuditError(.write, path: path, errno: errno)
                }
                off += n
            }
            size += UInt64(raw.count)
            dirty = true
            return size
        }
    }

    /// Encodes `events` into `block` (emptied first) as chained lines, adds a checkpoint when one
    /// is due, and appends it all with one write. `lines` gets each event's line (no newline) in
    /// `block`, in order; checkpoint lines are in `block` but not in `lines`. Returns the size after it.
    @discardableResult
    public func appendEvents(_ events: [AuditEvent], into block: inout [UInt8], lines: inout [Range<Int>]) throws -> UInt64 {
        block.removeAll(keepingCapacity: true)
        lines.removeAll(keepingCapacity: true)
        guard !events.isEmpty else { return currentSize }
        lock.lock()
        defer { lock.unlock() }
        lockFile()
        defer { flock(fd, LOCK_UN) }
        var (seq, chain) = try currentHead()
        if let r = rotationSettings, size >= r.bytes, size > 0 {
            try rotate(r, into: &block, seq: &seq, chain: &chain)
        }
        for event in events {
            let start = block.count
            event.appendJSON(to: &block)
            seq += 1
            chain = Chain.seal(&block, from: start, seq: seq, previous: chain)
            lines.append(start..<block.count)
            block.append(UInt8(ascii: "\n"))
            unsigned += 1
            if unsigned >= checkpointEvery {
                try appendCheckpoint(to: &block, seq: &seq, chain: &chain)
            }
        }
        return try writeChained(block, seq: seq, chain: chain)
    }

    /// Appends a checkpoint now if any event is not signed yet (a daemon stopping, an export).
    public func checkpoint() throws {
        lock.lock()
        defer { lock.unlock() }
        try checkpointLocked()
    }

    /// The timer's check: a checkpoint when events waited `checkpointInterval` for one.
    func checkpointIfDue() {
        lock.lock()
        defer { lock.unlock() }
        guard unsigned > 0, ContinuousClock.now - lastCheckpoint >= checkpointInterval else { return }
        try? checkpointLocked()
    }

    private func checkpointLocked() throws {
        lockFile()
        defer { flock(fd, LOCK_UN) }
        // after another writer's lines, currentHead counts an unsigned tail as 1
        var (seq, chain) = try currentHead()
        guard unsigned > 0 else { return }
        var block: [UInt8] = []
        try appendCheckpoint(to: &block, seq: &seq, chain: &chain)
        try writeChained(block, seq: seq, chain: chain)
    }

    func appendCheckpoint(to block: inout [UInt8], seq: inout UInt64, chain: inout Chain.Value, continues: String? = nil) throws {
        let start = block.count
        try Checkpoint.appendJSON(signing: seq, chain: chain, key: signingKey, publicKey: publicKeyText, continues: continues, to: &block)
        seq += 1
        chain = Chain.seal(&block, from: start, seq: seq, previous: chain)
        pendingHead = Array(block[start...])
        block.append(UInt8(ascii: "\n"))
        unsigned = 0
        lastCheckpoint = .now
    }

    /// The last checkpoint line of the block being written, copied to ``headPath`` once it is in the log.
    var pendingHead: [UInt8]?

    /// Writes a block of chained lines; with the lock and the flock held.
    func writeChained(_ block: [UInt8], seq: UInt64, chain: Chain.Value) throws -> UInt64 {
        defer { pendingHead = nil }
        var off = 0
        while off < block.count {
            let n = block.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let err = errno
                // part of the block may be in the file (ENOSPC midway): cut it off again, so the
                // log ends on the last whole line it acknowledged; the next write re-reads the
                // tail either way (and keeps our head if the tail holds less)
                if off > 0 { _ = ftruncate(fd, off_t(size)) }
                headAt = .max
                throw AuditError(.write, path: path, errno: err)
            }
            off += n
        }
        size += UInt64(block.count)
        dirty = true
        head = (seq, chain)
        headAt = size
        if let line = pendingHead {
            // the log first: a checkpoint.json naming lines the disk does not hold yet would make
            // an honest log look cut off after a power loss
            fdatasync(fd)
            writeHead(line)
        }
        return size
    }

    /// Replaces checkpoint.json by rename, so a reader sees the old one or the new one whole.
    private func writeHead(_ line: [UInt8]) {
        let tmp = headPath + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        var data = line
        data.append(UInt8(ascii: "\n"))
        let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        if n == data.count, synced { rename(tmp, headPath) } else { unlink(tmp) }
    }

    /// The seq and chain value to continue from: ours if nobody wrote since, else the file's tail.
    func currentHead() throws -> (UInt64, Chain.Value) {
        var st = stat()
        fstat(fd, &st)
        let fileSize = UInt64(st.st_size)
        if let head, headAt == fileSize { return head }
        if fileSize > 0, Self.lastByte(path: path) != UInt8(ascii: "\n") {
            // a writer died mid-line: end that line so it does not swallow ours
            _ = "\n".withCString { write(fd, $0, 1) }
        }
        fstat(fd, &st)
        size = UInt64(st.st_size)
        let found = try Self.lastSeal(path: path, size: size)
        if let found, head.map({ found.seq >= $0.0 }) ?? true {
            head = (found.seq, found.chain)
            // another writer's events since the last checkpoint are not counted here: checkpoint
            // after our next event, so no run of unsigned events grows past the verifier's bound
            unsigned = found.checkpoint ? 0 : max(unsigned, checkpointEvery - 1)
        } else if head == nil {
            // a new file after a rotation continues the rotated one's chain
            head = Self.lastRotatedSeal(directory: (path as NSString).deletingLastPathComponent) ?? (0, .genesis)
            unsigned = 0
        }
        // else the file lost chained lines we wrote (truncated, or an unchained line put after
        // them): continue from our own head, so verify reports the gap instead of a fresh chain
        // starting over the evidence
        headAt = size
        return head!
    }

    /// The seal of the last chained line of a file, reading backwards from its end. nil when the
    /// file has none (new, or written before chaining: the chain starts at seq 1).
    static func lastSeal(path: String, size: UInt64) throws -> (seq: UInt64, chain: Chain.Value, checkpoint: Bool)? {
        guard size > 0 else { return nil }
        let rfd = open(path, O_RDONLY | O_CLOEXEC)
        guard rfd >= 0 else { throw AuditError(.read, path: path, errno: errno, detail: "to continue its chain: \(String(cString: strerror(errno)))") }
        defer { close(rfd) }
        var end = size
        var tail: [UInt8] = []  // bytes from `end` to the start of the unscanned part
        let chunk: UInt64 = 64 << 10
        while end > 0 || !tail.isEmpty {
            let start = end > chunk ? end - chunk : 0
            var buf = [UInt8](repeating: 0, count: Int(end - start))
            let n = buf.withUnsafeMutableBytes { pread(rfd, $0.baseAddress, $0.count, off_t(start)) }
            guard n == buf.count else { throw AuditError(.read, path: path, detail: "a short read of its tail, to continue its chain") }
            buf.append(contentsOf: tail)
            // whole lines only: the first line of the chunk may continue before it
            var lineEnd = buf.count
            var i = buf.count
            while i > 0 {
                i -= 1
                if buf[i] == UInt8(ascii: "\n") || (i == 0 && start == 0) {
                    let lineStart = buf[i] == UInt8(ascii: "\n") ? i + 1 : i
                    if lineStart < lineEnd {
                        let found = buf.withUnsafeBytes { raw -> (UInt64, Chain.Value, Bool)?? in
                            let line = UnsafeRawBufferPointer(rebasing: raw[lineStart..<lineEnd])
                            if let s = Chain.seal(of: line) { return .some((s.seq, s.chain, Checkpoint.isCheckpoint(line))) }
                            // a whole event without a chain: written before chaining, nothing to continue
                            if (try? JSONSerialization.jsonObject(with: Data(line))) != nil { return .some(nil) }
                            return nil // torn: look further back
                        }
                        if let found { return found.map { (seq: $0.0, chain: $0.1, checkpoint: $0.2) } }
                    }
                    lineEnd = i
                }
            }
            if start == 0 { break }
            tail = Array(buf[0..<lineEnd])
            end = start
        }
        return nil
    }

    /// The size of what has been written so far.
    public var currentSize: UInt64 { lock.withLock { size } }

    public func syncIfDirty() {
        let needed = lock.withLock { () -> Bool in
            let d = dirty
            dirty = false
            return d
        }
        if needed { fdatasync(fd) }
    }

    /// Reads the events of a log file up to `limit` bytes, in order. Lines that do not decode (a
    /// torn write, a foreign line) are counted in `skipped` and passed over.
    public static func read(path: String, upTo limit: UInt64? = nil, filter: EventFilter = EventFilter(),
                            _ body: (AuditEvent, Data) throws -> Void) throws -> (read: Int, skipped: Int) {
        var reader = try Reader(path: path, upTo: limit, filter: filter)
        var count = 0
        while let batch = try reader.next() {
            for (e, line) in batch {
                count += 1
                try body(e, line)
            }
        }
        return (count, reader.skipped)
    }

    /// Reads a log in batches, so a caller can await between them (a slow reader of a long
    /// history must not hold a thread).
    public struct Reader {
        private let handle: FileHandle?
        private var remaining: UInt64
        private var pending = Data()
        private let filter: EventFilter
        private let decoder = AuditEvent.makeDecoder()
        private var done = false
        public private(set) var skipped = 0

        public init(path: String, upTo limit: UInt64? = nil, filter: EventFilter = EventFilter()) throws {
            handle = FileHandle(forReadingAtPath: path)
            if handle == nil, FileManager.default.fileExists(atPath: path) {
                throw AuditError(.read, path: path, errno: EACCES)
            }
            remaining = limit ?? UInt64.max
            self.filter = filter
        }

        /// The next matching events, about `chunk` bytes of log at a time; nil at the end.
        public mutating func next(chunk: Int = 1 << 20) throws -> [(AuditEvent, Data)]? {
            guard let handle, !done else { return nil }
            var out: [(AuditEvent, Data)] = []
            while out.isEmpty && !done {
                let data = remaining > 0 ? handle.readData(ofLength: Int(min(remaining, UInt64(chunk)))) : Data()
                remaining -= UInt64(data.count)
                if data.isEmpty {
                    done = true
                    try? handle.close()
                    decode(pending, into: &out) // a last line without its newline
                    pending = Data()
                    break
                }
                pending.append(data)
                var start = pending.startIndex
                while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    decode(pending[start..<nl], into: &out)
                    start = pending.index(after: nl)
                }
                pending = Data(pending[start...])
            }
            return out.isEmpty && done ? nil : out
        }

        private mutating func decode(_ line: Data, into out: inout [(AuditEvent, Data)]) {
            guard !line.isEmpty else { return }
            guard let e = try? decoder.decode(AuditEvent.self, from: line) else {
                skipped += 1
                return
            }
            // checkpoints are for `audit verify`, not for readers of events
            if e.type != .checkpoint, filter.matches(e) { out.append((e, Data(line))) }
        }
    }
}

/// A failure of the audit log, with its cause as fields: what was being done, to which path, and
/// the errno (or the underlying error's words when there is no errno). The description is one line
/// for an operator; which setting to change is the caller's to say (a library knows no flags).
public struct AuditError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        case createStateDirectory
        case open
        case write
        case read
    }

    public var operation: Operation
    public var path: String
    public var errno: Int32?
    public var detail: String?

    public init(_ operation: Operation, path: String, errno: Int32? = nil, detail: String? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.detail = detail
    }

    /// The cause in words: the underlying error's, else strerror.
    private var cause: String {
        if let detail { return detail }
        if let errno { return String(cString: strerror(errno)) }
        return "unknown error"
    }

    public var description: String {
        switch operation {
        case .createStateDirectory: "cannot create the state directory \(path): \(cause)"
        case .open: "cannot open the audit log \(path): \(cause)"
        case .write: "writing the audit log \(path): \(cause)"
        case .read where errno == EACCES:
            "cannot read the audit log \(path): permission denied; run as root or as a member of group bordergate"
        case .read: "cannot read the audit log \(path): \(cause)"
        }
    }

    /// The state directory cannot be used: another one (or its permissions) is the fix.
    public var isStateDirectoryUnusable: Bool { operation == .createStateDirectory || operation == .open }
}
