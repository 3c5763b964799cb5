import BordergateAudit
import BordergateService
import Foundation

/// Where `events` puts what it reads: the output format, `--last N` (history held back until its
/// end, then only the last N of it), and the table's header once.
final class EventsSink {
    let format: EventOutput
    let last: Int?
    private var held: [(AuditEvent, Data)] = []
    private var live = false
    private var headerDone = false
    private let out: FileHandle
    /// Verdicts in colour: on a terminal only, and not when NO_COLOR is set (no-color.org).
    private let colour: Bool

    init(format: EventOutput, last: Int?, file: String? = nil) throws {
        self.format = format
        self.last = last
        if let file {
            guard FileManager.default.fileExists(atPath: file) || FileManager.default.createFile(atPath: file, contents: nil),
                  let h = FileHandle(forWritingAtPath: file) else {
                throw ServiceError("cannot write events to \(file): check the path and its permissions")
            }
            h.seekToEndOfFile()
            out = h
        } else {
            out = .standardOutput
        }
        colour = file == nil && format != .json && isatty(1) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    func event(_ e: AuditEvent, line: Data) {
        if let last, !live {
            held.append((e, line))
            if held.count > last { held.removeFirst(held.count - last) }
            return
        }
        write(e, line: line)
    }

    /// The history is over: what `--last` held goes out, and everything after goes straight out.
    func historyEnded() {
        guard !live else { return }
        live = true
        for (e, line) in held { write(e, line: line) }
        held = []
    }

    private func write(_ e: AuditEvent, line: Data) {
        if format == .table, !headerDone {
            headerDone = true
            out.write(Data((EventTable.header + "\n").utf8))
        }
        var data: Data
        switch format {
        case .table: data = Data(painted(EventTable.row(e), e).utf8)
        case .compact: data = Data(painted(EventFormatter.compact(e), e).utf8)
        case .json: data = line
        }
        data.append(UInt8(ascii: "\n"))
        out.write(data)
    }

    /// The verdict's first appearance in the line, in its colour.
    private func painted(_ text: String, _ e: AuditEvent) -> String {
        guard colour, let v = e.verdict, let code = Self.colours[v.rawValue],
              let at = text.range(of: " \(v.rawValue) ") else { return text }
        return text.replacingCharacters(in: at, with: " \u{1B}[\(code)m\(v.rawValue)\u{1B}[0m ")
    }

    static let colours = ["deny": "31", "error": "31", "pass": "32", "redirect": "36", "audit": "33", "grant": "35"]
}

/// `-o table`: fixed columns, so a stream lines up without knowing what comes later.
enum EventTable {
    static let columns: [(String, Int)] = [("TIME", 24), ("TYPE", 8), ("VERDICT", 8), ("PROCESS", 22), ("DESTINATION", 34), ("POLICY", 12)]
    static var header: String { line(columns.map(\.0), last: "REASON") }

    static func row(_ e: AuditEvent) -> String {
        let time = String(AuditTime.format(e.time).dropLast(4)) + "Z"
        let process = e.process.map { "\($0.comm)[\($0.pid)]" } ?? ""
        var dest = ""
        if let d = e.destination {
            dest = EventFormatter.endpoint(d.ip, d.port)
            if let h = d.host { dest += " \(h)" }
            if let r = d.region { dest += " [\(r)]" }
        }
        let why = e.reason ?? e.error ?? e.message ?? ""
        return line([time, e.type.rawValue, e.verdict?.rawValue ?? "", process, dest, e.policy ?? ""], last: why)
    }

    private static func line(_ cells: [String], last: String) -> String {
        var out = ""
        for (cell, (_, width)) in zip(cells, columns) {
            let text = cell.count > width ? String(cell.prefix(width - 1)) + "…" : cell
            out += text.padding(toLength: width, withPad: " ", startingAt: 0) + " "
        }
        return out + last
    }
}

extension EventsCommand {
    /// The filter options that follow a `--not` in `arguments` (`--not --verdict pass`,
    /// `--not --host=*.example`): those filter out instead of in.
    static func negatedOptions(in arguments: [String]) -> Set<String> {
        var out: Set<String> = []
        for (i, a) in arguments.enumerated() where a == "--not" && i + 1 < arguments.count {
            let next = arguments[i + 1]
            guard next.hasPrefix("--") else { continue }
            let name = String(next.dropFirst(2).prefix { $0 != "=" })
            if negatable.contains(name) { out.insert(name) }
        }
        return out
    }

    static let negatable: Set<String> = ["pid", "cgroup", "verdict", "type", "region", "host"]
}
