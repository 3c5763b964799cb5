import Foundation

/// The durable audit log: one JSON event per line, appended to a file in the state directory.
///
/// Events are written as they happen (the hub writes what gathered within a few milliseconds with one
/// `write(2)`), so they survive a crash of the daemon;
/// `fdatasync` runs on a short timer rather than per event, so a burst of 20,000 connections a
/// second costs one flush, not 20,000. A line torn by a crash is terminated on the next open and
/// skipped by readers, so it never glues itself to the next event.
public final class AuditLog: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var size: UInt64
    private var dirty = false
    private var syncTimer: DispatchSourceTimer?

    public init(path: String, syncInterval: Duration = .milliseconds(200)) throws {
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
        timer.setEventHandler { [weak self] in self?.syncIfDirty() }
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
            if filter.matches(e) { out.append((e, Data(line))) }
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
