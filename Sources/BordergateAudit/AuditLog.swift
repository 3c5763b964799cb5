import Foundation

/// The durable audit log: one JSON event per line, appended to a file in the state directory.
///
/// Each event is written with one `write(2)` as it happens, so it survives a crash of the daemon;
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
            throw AuditError("cannot create the state directory \(dir): \(error.localizedDescription); set --state-dir or BORDERGATE_STATE_DIR to a writable directory")
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw AuditError("cannot open the audit log \(path): \(String(cString: strerror(errno))); set --state-dir or BORDERGATE_STATE_DIR to a writable directory")
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
        return try lock.withLock {
            try data.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, raw.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw AuditError("writing the audit log \(path): \(String(cString: strerror(errno)))")
                    }
                    off += n
                }
            }
            size += UInt64(data.count)
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
        guard let h = FileHandle(forReadingAtPath: path) else {
            if !FileManager.default.fileExists(atPath: path) { return (0, 0) }
            throw AuditError("cannot read the audit log \(path): permission denied; run as root or as a member of group bordergate")
        }
        defer { try? h.close() }
        let decoder = AuditEvent.makeDecoder()
        var remaining = limit ?? UInt64.max
        var pending = Data()
        var count = 0
        var skipped = 0
        func handle(_ line: Data) throws {
            guard !line.isEmpty else { return }
            guard let e = try? decoder.decode(AuditEvent.self, from: line) else {
                skipped += 1
                return
            }
            if filter.matches(e) {
                count += 1
                try body(e, line)
            }
        }
        while remaining > 0 {
            let chunk = h.readData(ofLength: Int(min(remaining, 1 << 20)))
            if chunk.isEmpty { break }
            remaining -= UInt64(chunk.count)
            pending.append(chunk)
            var start = pending.startIndex
            while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                try handle(pending[start..<nl])
                start = pending.index(after: nl)
            }
            pending = Data(pending[start...])
        }
        try handle(pending)
        return (count, skipped)
    }
}

/// A failure of the audit side, phrased for an operator.
public struct AuditError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
