import BordergateAudit
import Foundation

/// Talks to a running daemon over its control socket, with plain blocking I/O: the CLI is one
/// request and its answer.
public struct ControlClient: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// Why the control socket could not be reached, with its cause as fields. The description says
    /// what happened; which flag or setting to change is the CLI's to add.
    public enum ConnectError: Error, Sendable, Equatable {
        case cannotCreateSocket(errno: Int32)
        case pathTooLong(path: String)
        /// The socket exists but this user may not connect (EACCES, EPERM).
        case denied(path: String, errno: Int32)
        /// Nothing listens at `path` (ENOENT, ECONNREFUSED, ...).
        case noDaemon(path: String, errno: Int32)
    }

    /// Connects, sends one request, and calls `onLine` for every line of the answer until the
    /// daemon closes or `onLine` returns false.
    public func send(_ request: ControlRequest, onLine: (Data) throws -> Bool) throws {
        let fd = try connect()
        defer { close(fd) }
        var data = try JSONEncoder().encode(request)
        data.append(UInt8(ascii: "\n"))
        _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var pending = Data()
        var buf = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending.append(contentsOf: buf[0..<n])
            var start = pending.startIndex
            while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                if try !onLine(Data(pending[start..<nl])) { return }
                start = pending.index(after: nl)
            }
            pending = Data(pending[start...])
        }
        if !pending.isEmpty { _ = try onLine(pending) }
    }

    /// One request, one response.
    public func call(_ request: ControlRequest) throws -> ControlResponse {
        var response: ControlResponse?
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        try send(request) { line in
            response = try decoder.decode(ControlResponse.self, from: line)
            return false
        }
        guard let response else { throw ServiceError("the daemon closed the control socket without answering; see its log") }
        return response
    }

    /// True when a daemon answers on the socket.
    public var isDaemonRunning: Bool {
        guard let fd = try? connect() else { return false }
        close(fd)
        return true
    }

    private func connect() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConnectError.cannotCreateSocket(errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ConnectError.pathTooLong(path: path)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let err = errno
            close(fd)
            if err == EACCES || err == EPERM {
                throw ConnectError.denied(path: path, errno: err)
            }
            throw ConnectError.noDaemon(path: path, errno: err)
        }
        return fd
    }
}

extension ControlClient.ConnectError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .cannotCreateSocket(let err): "cannot create a socket: \(String(cString: strerror(err)))"
        case .pathTooLong(let path): "control socket path too long: \(path)"
        case .denied(let path, _): "permission denied on the control socket \(path); run as root or as a member of group bordergate"
        case .noDaemon(let path, _): "no Bordergate daemon is running (nothing answers on \(path))"
        }
    }
}
