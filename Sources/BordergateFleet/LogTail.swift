import Foundation

/// One line of the audit log on its way to the fleet table.
struct ExportLine: Sendable {
    var seq: Int64
    var time: String
    var type: String
    var verdict: String?
    var line: String
}

/// Where the export stands in the log: the file (by inode, so a rotation's rename does not lose
/// it), the byte offset after the last line shipped, and that line's `seq`. Kept in the state
/// directory and written only after PostgreSQL committed the batch: a crash ships a batch again,
/// which (host, seq) makes harmless.
struct LogPosition: Codable, Sendable, Equatable {
    var inode: UInt64 = 0
    var offset: UInt64 = 0
    var seq: Int64 = 0
}

/// Reads the audit log from a position, in whole lines: the log itself is the backlog, so an
/// outage of any length loses nothing and holds nothing in memory.
struct LogTail {
    let logPath: String
    var position: LogPosition

    /// At most this much is read per batch.
    static let chunk = 4 << 20

    /// The next lines after `position` (at most `limit`), and the position after them. Lines
    /// without a `seq` (a log written before the chain) are passed over: they cannot be shipped
    /// idempotently.
    func next(limit: Int) throws -> (lines: [ExportLine], position: LogPosition) {
        var pos = position
        let active = Self.inode(logPath)
        var path = logPath
        if pos.inode != active {
            // the file we were reading was rotated away (renamed beside the log), or is gone
            if let rotated = Self.file(withInode: pos.inode, besides: logPath), pos.inode != 0 {
                path = rotated
            } else {
                pos = LogPosition(inode: active, offset: 0, seq: pos.seq)
            }
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return ([], pos) }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        if size < pos.offset { pos.offset = 0 } // cut short: read it again; seq skips what went
        if size == pos.offset {
            // the end of a rotated file: go on with the active one
            if path != logPath { return try LogTail(logPath: logPath, position: LogPosition(inode: active, offset: 0, seq: pos.seq)).next(limit: limit) }
            return ([], pos)
        }
        try handle.seek(toOffset: pos.offset)
        let data = try handle.read(upToCount: Self.chunk) ?? Data()
        var lines: [ExportLine] = []
        var consumed = 0
        var start = data.startIndex
        while lines.count < limit, let nl = data[start...].firstIndex(of: 0x0A) {
            let bytes = data[start..<nl]
            consumed += bytes.count + 1
            start = data.index(after: nl)
            if let line = Self.parse(bytes), line.seq > pos.seq {
                lines.append(line)
                pos.seq = line.seq
            }
        }
        if consumed == 0 && data.count == Self.chunk {
            // one line longer than a chunk: no event is that long; pass over it in pieces (each
            // piece fails to parse), so the export never stalls on it
            consumed = data.count
        }
        pos.offset += UInt64(consumed)
        return (lines, pos)
    }

    /// The fields the table's columns need, found by their keys in the line the writer wrote
    /// (its members are in a fixed order, `seq` near the end): far cheaper than decoding JSON, and
    /// a line it cannot read this way is decoded as JSON instead.
    static func parse(_ bytes: Data) -> ExportLine? {
        let b = [UInt8](bytes)
        func string(after key: [UInt8], from: Int = 0) -> String? {
            guard let at = find(key, in: b, from: from) else { return nil }
            let start = at + key.count
            guard let end = b[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: b[start..<end], as: UTF8.self)
        }
        // a whole JSON object first: a line torn by a crash and joined to the next would fail
        // PostgreSQL's jsonb cast and hold the whole batch back
        guard (try? JSONSerialization.jsonObject(with: bytes)) is [String: Any] else { return nil }
        if let seqAt = findLast(Array(#","seq":"#.utf8), in: b),
           let time = string(after: Array(#"{"time":""#.utf8)), let type = string(after: Array(#","type":""#.utf8)) {
            let digits = b[(seqAt + 7)...].prefix { $0 >= 0x30 && $0 <= 0x39 }
            if let seq = Int64(String(decoding: digits, as: UTF8.self)) {
                return ExportLine(seq: seq, time: time, type: type, verdict: string(after: Array(#","verdict":""#.utf8)),
                                  line: String(decoding: b, as: UTF8.self))
            }
        }
        guard let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any],
              let seq = (object["seq"] as? NSNumber)?.int64Value, let time = object["time"] as? String,
              let type = object["type"] as? String else { return nil }
        return ExportLine(seq: seq, time: time, type: type, verdict: object["verdict"] as? String,
                          line: String(decoding: bytes, as: UTF8.self))
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int = 0) -> Int? {
        guard needle.count <= hay.count else { return nil }
        var i = from
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    static func findLast(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        var i = hay.count - needle.count
        while i >= 0 {
            if hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i -= 1
        }
        return nil
    }

    static func inode(_ path: String) -> UInt64 {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let n = attributes[.systemFileNumber] as? NSNumber else { return 0 }
        return n.uint64Value
    }

    static func file(withInode inode: UInt64, besides path: String) -> String? {
        let dir = (path as NSString).deletingLastPathComponent
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
        return names.filter { $0.hasSuffix(".jsonl") }.map { dir + "/" + $0 }.first { Self.inode($0) == inode }
    }
}
