import BordergateAudit
import CBordergateSys
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What the relay threads need from the proxy.
struct RelayContext: Sendable {
    let sink: ProxyEventSink
    let counters: ProxyCounters
    let logger: Logger
    let upstreamMark: UInt32?
    let connectTimeoutNanos: UInt64
}

/// The proxy's accept loops and its relay for connections that need no inspection.
///
/// Each thread has an epoll set of its own and waits on every listener (EPOLLEXCLUSIVE: one thread
/// wakes per connection). A connection stays on the thread that accepted it, so nothing is handed
/// between threads and nothing is locked per read. Relaying a pair of sockets with plain
/// recv/send costs a fraction of what a pair of NIO channels does (registration, interest changes,
/// promises, pipeline teardown), which is what a new connection per request pays for. Connections
/// whose verdict needs the tool's first bytes go to NIO instead (see ``TransparentProxy``).
final class RelayEngine: Sendable {
    private let workers: [RelayWorker]
    private let listeners: [Int32]

    /// `place` decides what becomes of each accepted socket, on the thread that accepted it.
    init(listeners: [Int32], threads: Int, context: RelayContext,
         place: @escaping @Sendable (Int32, SocketAddress?, RelayWorker) -> Void) throws {
        self.listeners = listeners
        var workers: [RelayWorker] = []
        for i in 0..<max(1, threads) {
            do {
                workers.append(try RelayWorker(index: i, listeners: listeners, context: context, place: place))
            } catch {
                for w in workers { w.closeDescriptors() }
                throw error
            }
        }
        self.workers = workers
    }

    func start() {
        for w in workers { w.start() }
    }

    /// Stops accepting, closes every relayed connection (each reports its `close` event), and
    /// returns once every thread is gone.
    func stop() async {
        for w in workers { w.requestStop() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { [workers, listeners] in
                for w in workers { w.waitUntilStopped() }
                for fd in listeners { close(fd) }
                done.resume()
            }
        }
    }

    /// Opens a listening socket (non-blocking; accepted sockets inherit TCP_NODELAY from it).
    /// Returns it and the port it is bound to.
    /// With `mark`, the listener carries it: the kernel redirects only to a listener with the mark.
    static func listen(host: String, port: Int, backlog: Int32, mark: UInt32? = nil) throws -> (Int32, Int) {
        let address = try SocketAddress(ipAddress: host, port: port)
        let fd = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ProxyError(errnoText(errno)) }
        func fail(_ what: String) -> ProxyError {
            let e = ProxyError("\(what): \(errnoText(errno))")
            close(fd)
            return e
        }
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4) == 0,
              setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4) == 0 else { throw fail("setsockopt") }
        if var mark = mark.map({ Int32(bitPattern: $0) }), setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, 4) != 0 {
            throw fail("setsockopt SO_MARK")
        }
        if address.protocol.rawValue == AF_INET6, setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, 4) != 0 {
            throw fail("setsockopt")
        }
        guard address.withSockAddr({ bind(fd, $0, socklen_t($1)) }) == 0 else { throw fail("bind") }
        guard Glibc.listen(fd, backlog) == 0 else { throw fail("listen") }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard withUnsafeMutablePointer(to: &storage, {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }) == 0 else { throw fail("getsockname") }
        return (fd, socketAddress(storage)?.port ?? port)
    }
}
