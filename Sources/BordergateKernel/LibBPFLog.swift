import CLibBPF
import Foundation
import Logging

/// Routes libbpf's messages to a `Logger` and keeps the last ones, so a failed load can quote the
/// verifier's words instead of a bare errno. libbpf's print hook is process-global.
enum LibBPFLog {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var recent: [String] = []
    nonisolated(unsafe) private static var logger: Logger?

    static func install(_ logger: Logger) {
        lock.withLock { Self.logger = logger }
        libbpf_set_print { level, format, args in
            guard let format, let args else { return 0 }
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = vsnprintf(&buffer, buffer.count, format, args)
            guard n > 0 else { return 0 }
            let line = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: .newlines)
            LibBPFLog.record(line, warning: level == LIBBPF_WARN)
            return n
        }
    }

    static func record(_ line: String, warning: Bool) {
        lock.withLock {
            recent.append(line)
            if recent.count > 200 { recent.removeFirst(recent.count - 200) }
            if warning { logger?.warning("libbpf: \(line)") } else { logger?.debug("libbpf: \(line)") }
        }
    }

    /// The last `n` libbpf lines, for an error message.
    static func tail(_ n: Int, separator: String) -> String {
        lock.withLock { recent.suffix(n).joined(separator: separator) }
    }

    static func reset() {
        lock.withLock { recent.removeAll() }
    }
}
