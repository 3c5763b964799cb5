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

/// What an errno says, in the lower case the proxy's messages use ("connection refused").
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code)).lowercased()
}

/// Why a dial failed, in the words of a close event's `error` ("timed out" however it timed out).
func dialErrorText(_ code: Int32) -> String {
    code == ETIMEDOUT ? "timed out" : errnoText(code)
}

/// An accepted peer's address, from what accept() wrote (no detour through text).
func socketAddress(_ storage: sockaddr_storage) -> SocketAddress? {
    var storage = storage
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
    case AF_INET6:
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
    default:
        return nil
    }
}

/// One direction of a relayed connection.
final class Flow {
    /// Bytes read but not yet taken by the other socket (allocated only while it pushes back).
    private var pending: UnsafeMutableRawPointer?
    private var start = 0
    private var end = 0
    /// The sender said EOF.
    var eof = false
    /// The source socket was found empty (a small read, or EAGAIN) since its last readable edge:
    /// reading it again would only say EAGAIN. Anything that arrives later raises a new edge.
    var drained = false
    /// An edge said the source's input ended or failed, or that urgent data came: a small read no
    /// longer means empty (the EOF that follows raises no new edge; a read stops short at the
    /// urgent mark with more queued behind it).
    var hup = false
    /// An edge said the sender's FIN had arrived (and no urgent data ever came): everything sent
    /// before the FIN was queued by then, so a read that leaves bytes of its buffer unfilled has
    /// taken the last of it, and the EOF needs no read of its own.
    var finSeen = false
    var urgentSeen = false
    /// The EOF was passed on (the receiver's output is shut).
    var shut = false
    /// Delivered to the receiver (counted on send: bytes read but still held are not).
    var bytes: UInt64 = 0
    var unreported: UInt64 = 0

    func delivered(_ n: Int) {
        bytes += UInt64(n)
        unreported += UInt64(n)
    }

    var pendingCount: Int { end - start }
    var pendingBytes: UnsafeMutableRawPointer { pending! + start }

    func hold(_ bytes: UnsafeRawPointer, _ count: Int) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 1)
        p.copyMemory(from: bytes, byteCount: count)
        pending = p
        start = 0
        end = count
    }

    func consumed(_ n: Int) {
        start += n
        if start == end { release() }
    }

    func release() {
        pending?.deallocate()
        pending = nil
        start = 0
        end = 0
    }
}

/// A relayed connection: the tool's socket and the one dialled to its original destination.
final class RelayPair {
    let id: UInt64
    let client: Int32
    var upstream: Int32 = -1
    var connected = false
    var done = false
    var requeued = false
    /// Which side said EOF first ("client" or "server"): names how the connection ended.
    var firstEOF: String?
    let toServer = Flow()
    let toClient = Flow()
    let connection: ProxiedConnection
    let started = ContinuousClock.now

    init(id: UInt64, client: Int32, connection: ProxiedConnection) {
        self.id = id
        self.client = client
        self.connection = connection
    }
}

/// One accept-and-relay thread. Everything but `requestStop` runs on its own thread.
final class RelayWorker: @unchecked Sendable {
    private static let wakeTag: UInt64 = 0
    private static let firstPairID: UInt64 = 1 << 20
    private static let scratchSize = 128 << 10
    /// Reads per direction before other connections get a turn.
    private static let readBudget = 16
    /// A read this small has emptied the socket (unless its EOF is announced).
    private static let shortRead = 16 << 10

    let index: Int
    private let epoll: Int32
    private let wake: Int32
    private let listeners: [Int32]
    private let context: RelayContext
    private let place: @Sendable (Int32, SocketAddress?, RelayWorker) -> Void
    private let stopRequested = NIOLockedValueBox(false)
    private let stopped = DispatchSemaphore(value: 0)
    private var thread: Thread?

    private var pairs: [UInt64: RelayPair] = [:]
    private var nextID = RelayWorker.firstPairID
    /// Dials in progress by deadline; deadlines only grow, so this is a queue.
    private var deadlines: [(at: UInt64, id: UInt64)] = []
    private var deadlinesHead = 0
    /// Pairs that used up their read budget and have more to read.
    private var again: [RelayPair] = []
    private var acceptPausedUntil: UInt64 = 0
    private let scratch = UnsafeMutableRawPointer.allocate(byteCount: RelayWorker.scratchSize, alignment: 16)

    init(index: Int, listeners: [Int32], context: RelayContext,
         place: @escaping @Sendable (Int32, SocketAddress?, RelayWorker) -> Void) throws {
        self.index = index
        self.listeners = listeners
        self.context = context
        self.place = place
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wake = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard epoll >= 0, wake >= 0 else {
            let e = errnoText(errno)
            if epoll >= 0 { close(epoll) }
            if wake >= 0 { close(wake) }
            throw ProxyError("cannot create the proxy's event loop: \(e)")
        }
        guard add(wake, events: UInt32(EPOLLIN.rawValue), tag: Self.wakeTag), addListeners() else {
            let e = errnoText(errno)
            closeDescriptors()
            throw ProxyError("cannot watch the proxy's listening sockets: \(e)")
        }
    }

    func start() {
        let t = Thread { [self] in
            // what top -H and perf show (Foundation's Thread.name does not reach the kernel)
            bg_name_thread("bg-relay-\(index)")
            run()
        }
        thread = t
        t.start()
    }

    func requestStop() {
        stopRequested.withLockedValue { $0 = true }
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    func waitUntilStopped() {
        guard thread != nil else { return }
        stopped.wait()
    }

    func closeDescriptors() {
        close(epoll)
        close(wake)
    }

    // MARK: The loop

    private func run() {
        let capacity: Int32 = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Int(capacity))
        defer { events.deallocate() }
        loop: while true {
            let n = epoll_wait(epoll, events, capacity, timeout())
            if n < 0 {
                if errno == EINTR { continue }
                context.logger.error("proxy: epoll_wait failed: \(errnoText(errno)); relay thread \(index) stops")
                break
            }
            for i in 0..<Int(n) {
                let tag = bg_epoll_data_at(events, Int32(i))
                if tag == Self.wakeTag {
                    var count: UInt64 = 0
                    _ = read(wake, &count, 8)
                    if stopRequested.withLockedValue({ $0 }) { break loop }
                } else if tag < Self.firstPairID {
                    acceptFrom(listeners[Int(tag) - 1])
                } else if let pair = pairs[tag >> 1] {
                    handle(pair, upstreamSide: tag & 1 == 1, events: bg_epoll_events_at(events, Int32(i)))
                }
            }
            if !again.isEmpty {
                let turn = again
                again.removeAll(keepingCapacity: true)
                for pair in turn {
                    pair.requeued = false
                    pump(pair)
                }
            }
            expireDials()
        }
        // a reset, not an EOF a tool could take for a complete transfer
        for pair in Array(pairs.values) { finish(pair, end: "proxy stopped", error: nil, reset: true) }
        closeDescriptors()
        scratch.deallocate()
        stopped.signal()
    }

    private func timeout() -> Int32 {
        if !again.isEmpty { return 0 }
        var wait: UInt64?
        if deadlinesHead < deadlines.count { wait = deadlines[deadlinesHead].at }
        if acceptPausedUntil > 0 { wait = min(wait ?? .max, acceptPausedUntil) }
        guard let wait else { return -1 }
        let now = Self.now()
        return wait <= now ? 0 : Int32(min((wait - now) / 1_000_000 + 1, 60_000))
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    private func add(_ fd: Int32, events: UInt32, tag: UInt64) -> Bool {
        var ev = bg_epoll_event(events, tag)
        return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) == 0
    }

    private func addListeners() -> Bool {
        for (i, fd) in listeners.enumerated() where !add(fd, events: UInt32(EPOLLIN.rawValue) | UInt32(EPOLLEXCLUSIVE.rawValue), tag: UInt64(i + 1)) {
            return false
        }
        return true
    }

    // MARK: Accepting

    private func acceptFrom(_ listener: Int32) {
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bg_accept_nonblocking(listener, $0, &len)
                }
            }
            if fd >= 0 {
                place(fd, socketAddress(storage), self)
                continue
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                return
            case EINTR, ECONNABORTED:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: stop accepting for a moment instead of spinning on
                // a listener that stays readable. Waiting tools sit in the backlog meanwhile.
                context.logger.error("proxy: cannot accept connections: \(errnoText(errno)); pausing 100 ms (raise the open-file limit, or guard fewer tools)")
                for fd in listeners { _ = epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil) }
                acceptPausedUntil = Self.now() + 100_000_000
                return
            default:
                context.logger.error("proxy: accept failed: \(errnoText(errno))")
                return
            }
        }
    }

    // MARK: Relaying

    /// Dials the original destination and relays the accepted socket `client` to it.
    func relay(client: Int32, connection: ProxiedConnection) {
        let pair = RelayPair(id: nextID, client: client, connection: connection)
        nextID += 1
        context.counters.add(\.active, 1)
        // The first read, before dialling, is also the probe for a tool that gave up (reset) while
        // its connection waited in the backlog: dialling would only open and tear down a
        // connection nobody reads. (Short connections make this common: without the probe,
        // connect+close through the proxy ran at a third of its rate.) What it reads, usually the
        // whole request, is held for the dial: at most a small read's worth, as a dial in
        // progress holds it on the heap; more stays in the kernel until the dial is through.
        let first = recv(client, scratch, Self.shortRead, Int32(MSG_DONTWAIT))
        if first > 0 {
            pair.toServer.hold(scratch, first)
            pair.toServer.drained = first < Self.shortRead
        } else if first == 0 {
            pair.toServer.eof = true
            pair.firstEOF = "client"
        } else if errno == EAGAIN || errno == EWOULDBLOCK {
            pair.toServer.drained = true
        } else if errno != EINTR {
            return finish(pair, end: "reset by client", error: "client: \(errnoText(errno)) before the relay began",
                          reset: true)
        }
        // Nothing can come from a server not yet dialled; its first bytes raise an edge.
        pair.toClient.drained = true
        let up = socket(connection.target.protocol.rawValue,
                        Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard up >= 0 else { return dialFailed(pair, errno) }
        pair.upstream = up
        var one: Int32 = 1
        if var mark = context.upstreamMark.map({ Int32(bitPattern: $0) }),
           setsockopt(up, SOL_SOCKET, SO_MARK, &mark, 4) != 0 {
            return dialFailed(pair, errno)
        }
        _ = setsockopt(up, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        let rc = connection.target.withSockAddr { connect(up, $0, socklen_t($1)) }
        if rc != 0, errno != EINPROGRESS { return dialFailed(pair, errno) }
        // EPOLLPRI: urgent data ends a read early with more behind it (see Flow.hup)
        let watch = UInt32(EPOLLIN.rawValue) | UInt32(EPOLLOUT.rawValue) | UInt32(EPOLLRDHUP.rawValue) | UInt32(EPOLLPRI.rawValue)
            | EPOLLET.rawValue
        pairs[pair.id] = pair
        guard add(client, events: watch, tag: pair.id << 1), add(up, events: watch, tag: pair.id << 1 | 1) else {
            return finish(pair, end: "proxy-error", error: "cannot watch the sockets: \(errnoText(errno))", reset: true)
        }
        if rc == 0 {
            pair.connected = true
            pump(pair)
        } else {
            deadlines.append((Self.now() + context.connectTimeoutNanos, pair.id))
        }
    }

    private func handle(_ pair: RelayPair, upstreamSide: Bool, events: UInt32) {
        guard !pair.done else { return }
        let failed = events & (UInt32(EPOLLERR.rawValue) | UInt32(EPOLLHUP.rawValue)) != 0
        // What the edge says of this socket's input, before anything else (even while dialling):
        // the flows read by it are no longer known to be empty.
        let ended = events & (UInt32(EPOLLRDHUP.rawValue) | UInt32(EPOLLHUP.rawValue) | UInt32(EPOLLERR.rawValue)
            | UInt32(EPOLLPRI.rawValue)) != 0
        let inbound = upstreamSide ? pair.toClient : pair.toServer
        if ended || events & UInt32(EPOLLIN.rawValue) != 0 { inbound.drained = false }
        if ended { inbound.hup = true }
        if events & UInt32(EPOLLPRI.rawValue) != 0 { inbound.urgentSeen = true }
        if events & (UInt32(EPOLLRDHUP.rawValue) | UInt32(EPOLLHUP.rawValue)) != 0, events & UInt32(EPOLLERR.rawValue) == 0,
           !inbound.urgentSeen {
            inbound.finSeen = true
        }
        // An error (a reset) is acted on when it is reported: a side whose input already ended is
        // never read again, and the event does not come back (edge-triggered). Before the dial is
        // through, a tool's reset also ends the dial. A hang-up without EPOLLERR is both
        // directions shut cleanly (every connection ends so): no error to fetch.
        if events & UInt32(EPOLLERR.rawValue) != 0 {
            var err: Int32 = 0
            var len = socklen_t(4)
            if getsockopt(upstreamSide ? pair.upstream : pair.client, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { err = errno }
            if upstreamSide, !pair.connected { return dialFailed(pair, err == 0 ? ECONNRESET : err) }
            if err != 0 { return abort(pair, side: upstreamSide ? "server" : "client", err) }
        }
        if !pair.connected {
            // Only the dial's outcome matters until it is known; what the tool sends meanwhile
            // waits in its socket.
            guard upstreamSide, events & UInt32(EPOLLOUT.rawValue) != 0 else { return }
            pair.connected = true
            return pump(pair)
        }
        // Bytes flow out of a readable socket and into a writable one. A socket left unread waits
        // only behind bytes held for a peer that pushed back (or in `again`), so writability
        // matters only while something is held.
        let readable = failed || events & (UInt32(EPOLLIN.rawValue) | UInt32(EPOLLRDHUP.rawValue) | UInt32(EPOLLPRI.rawValue)) != 0
        let writable = events & UInt32(EPOLLOUT.rawValue) != 0
        let toServerReady = upstreamSide ? writable && pair.toServer.pendingCount > 0 : readable
        let toClientReady = upstreamSide ? readable : writable && pair.toClient.pendingCount > 0
        if toServerReady, !move(pair, pair.toServer, from: pair.client, to: pair.upstream, reader: "client", writer: "server") { return }
        if toClientReady, !move(pair, pair.toClient, from: pair.upstream, to: pair.client, reader: "server", writer: "client") { return }
        settle(pair)
    }

    private func pump(_ pair: RelayPair) {
        guard !pair.done, pair.connected else { return }
        guard move(pair, pair.toServer, from: pair.client, to: pair.upstream, reader: "client", writer: "server"),
              move(pair, pair.toClient, from: pair.upstream, to: pair.client, reader: "server", writer: "client")
        else { return }
        settle(pair)
    }

    /// After moving bytes: report counts now and then, and finish once both directions are done.
    private func settle(_ pair: RelayPair) {
        if pair.toServer.unreported + pair.toClient.unreported > 1 << 20 { report(pair) }
        if pair.toServer.shut, pair.toClient.shut {
            // literals, not interpolation: a string built per connection is an allocation
            finish(pair, end: pair.firstEOF == "server" ? "closed by server" : "closed by client", error: nil)
        }
    }

    /// Moves what `src` has to `dst` until `src` has nothing more, `dst` pushes back, or the read
    /// budget is spent. Returns false if the pair was torn down.
    ///
    /// A small read (without an EOF announced) empties `src`, and a read of a socket known empty
    /// is skipped: a request and its response are one read each, as with haproxy, not two.
    /// Bulk reads are not small and keep reading: that beats a trip through epoll_wait per chunk.
    private func move(_ pair: RelayPair, _ flow: Flow, from src: Int32, to dst: Int32, reader: String, writer: String) -> Bool {
        var budget = Self.readBudget
        while true {
            if flow.pendingCount > 0 {
                let n = send(dst, flow.pendingBytes, flow.pendingCount, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    flow.delivered(n)
                    flow.consumed(n)
                    continue
                }
                if n < 0, errno == EINTR { continue }
                if n == 0 || errno == EAGAIN || errno == EWOULDBLOCK { return true } // EPOLLOUT on dst resumes
                abort(pair, side: writer, errno)
                return false
            }
            if flow.eof {
                if !flow.shut {
                    // When the other direction is already done, the close that follows sends
                    // this FIN: no separate shutdown.
                    let otherDone = flow === pair.toServer ? pair.toClient.shut : pair.toServer.shut
                    if !otherDone { _ = shutdown(dst, Int32(SHUT_WR)) }
                    flow.shut = true
                }
                return true
            }
            if flow.drained { return true }
            if budget == 0 {
                if !pair.requeued {
                    pair.requeued = true
                    again.append(pair)
                }
                return true
            }
            budget -= 1
            let n = recv(src, scratch, Self.scratchSize, 0)
            if n > 0 {
                flow.drained = n < Self.shortRead && !flow.hup
                if n < Self.scratchSize, flow.finSeen, !flow.urgentSeen {
                    // what a response and its FIN usually look like: one read, not two
                    flow.eof = true
                    if pair.firstEOF == nil { pair.firstEOF = reader }
                }
                var off = 0
                while off < n {
                    let w = send(dst, scratch + off, n - off, Int32(MSG_NOSIGNAL))
                    if w > 0 {
                        off += w
                        flow.delivered(w)
                    } else if w < 0, errno == EINTR {
                        continue
                    } else if w == 0 || errno == EAGAIN || errno == EWOULDBLOCK {
                        flow.hold(scratch + off, n - off) // and read no more until dst takes it
                        return true // EPOLLOUT on dst resumes
                    } else {
                        abort(pair, side: writer, errno)
                        return false
                    }
                }
                continue
            }
            if n == 0 {
                flow.eof = true
                if pair.firstEOF == nil { pair.firstEOF = reader }
                continue
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                flow.drained = true
                return true
            }
            abort(pair, side: reader, errno)
            return false
        }
    }

    /// One side failed (typically a reset): the other gets a reset too, as it would without a
    /// proxy in between.
    private func abort(_ pair: RelayPair, side: String, _ err: Int32) {
        finish(pair, end: "reset by \(side)", error: "\(side): \(errnoText(err))", reset: true)
    }

    private func dialFailed(_ pair: RelayPair, _ err: Int32) {
        context.counters.add(\.upstreamFailures, 1)
        finish(pair, end: "upstream-failed", error: pair.connection.dialFailure(dialErrorText(err)), reset: true)
    }

    private func expireDials() {
        guard deadlinesHead < deadlines.count else { return }
        let now = Self.now()
        while deadlinesHead < deadlines.count, deadlines[deadlinesHead].at <= now {
            let id = deadlines[deadlinesHead].id
            deadlinesHead += 1
            if let pair = pairs[id], !pair.connected { dialFailed(pair, ETIMEDOUT) }
        }
        if deadlinesHead == deadlines.count {
            deadlines.removeAll(keepingCapacity: true)
            deadlinesHead = 0
        } else if deadlinesHead > 4096 {
            deadlines.removeFirst(deadlinesHead)
            deadlinesHead = 0
        }
        if acceptPausedUntil > 0, acceptPausedUntil <= now {
            acceptPausedUntil = 0
            _ = addListeners()
        }
    }

    private func report(_ pair: RelayPair) {
        context.counters.add(sent: pair.toServer.unreported, received: pair.toClient.unreported)
        pair.toServer.unreported = 0
        pair.toClient.unreported = 0
    }

    /// Closes both sockets (closing takes them out of the epoll set) and reports the `close` event.
    private func finish(_ pair: RelayPair, end: String, error: String?, reset: Bool = false) {
        guard !pair.done else { return }
        pair.done = true
        pairs[pair.id] = nil
        report(pair)
        context.counters.add(\.active, 0, subtracting: 1)
        if reset {
            Self.reset(pair.client)
            if pair.upstream >= 0 { Self.reset(pair.upstream) }
        } else {
            close(pair.client)
            if pair.upstream >= 0 { close(pair.upstream) }
        }
        pair.toServer.release()
        pair.toClient.release()
        context.sink.publish(RelaySession.closeEvent(
            connection: pair.connection, sent: pair.toServer.bytes, received: pair.toClient.bytes,
            elapsed: ContinuousClock.now - pair.started, end: end, error: error))
    }

    /// Closes with an RST (SO_LINGER 0), so the peer sees "connection reset" rather than EOF.
    static func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
