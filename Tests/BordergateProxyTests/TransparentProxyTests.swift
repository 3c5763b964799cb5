import BordergateAudit
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
import BordergateInspection
@testable import BordergateProxy

/// Collects what the proxy reports.
final class EventRecorder: ProxyEventSink, @unchecked Sendable {
    private let lock = NSLock()
    private var events: [AuditEvent] = []
    func publish(_ event: AuditEvent) { lock.withLock { events.append(event) } }
    var all: [AuditEvent] { lock.withLock { events } }

    func waitFor(_ type: AuditEvent.Kind, count: Int = 1) async -> [AuditEvent] {
        for _ in 0..<250 {
            let found = all.filter { $0.type == type }
            if found.count >= count { return found }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return all.filter { $0.type == type }
    }
}

/// Sends every accepted connection to one target, as the kernel map would for a redirected one.
struct FixedResolver: ConnectionResolver {
    let target: SocketAddress?
    /// Set: every connection waits for its first bytes and this verdict (the NIO path).
    var decide: (@Sendable (HostObservation) -> ProxyVerdict)? = nil

    func resolve(client: SocketAddress) -> ProxiedConnection? {
        guard let target else { return nil }
        var conn = ProxiedConnection(
            connectionID: "test-\(client.port ?? 0)", target: target,
            process: .init(pid: 1, ppid: nil, uid: 0, user: "root", comm: "test", exe: nil, cgroup: "/test"),
            destination: .init(ip: target.ipAddress ?? "?", port: target.port ?? 0), policy: "default",
            reason: "test", connectedAt: Date())
        conn.decide = decide
        return conn
    }
}

/// A verdict that refuses one hostname and relays everything else.
@Sendable func refusing(_ blocked: String) -> @Sendable (HostObservation) -> ProxyVerdict {
    { host in
        let refused = host == .name(blocked)
        return ProxyVerdict(relay: !refused, verdict: refused ? .deny : .redirect,
                            reason: refused ? "host \(blocked) is refused" : "test", policy: "default", rule: nil,
                            destination: .init(ip: "127.0.0.1", port: 0))
    }
}

/// An upstream that reads until EOF, then answers with the byte count and closes.
final class CountUntilEOF: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    var total = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        total += unwrapInboundIn(data).readableBytes
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            let reply = context.channel.allocator.buffer(string: "got \(total)\n")
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Connects a blocking TCP client, for driving the proxy like a tool would.
func blockingConnect(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 { throw IOError(errnoCode: errno, reason: "connect") }
    return fd
}

/// Runs blocking socket code on a thread of its own. In a Task it would hold one of the few
/// cooperative threads (two on a 2-core machine) and could starve every other test.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread.detachNewThread {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        }
    }
}

func readAll(_ fd: Int32) -> (Data, Int32) {
    var out = Data()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { return (out, errno) }
        if n == 0 { return (out, 0) }
        out.append(contentsOf: buf[0..<n])
    }
}

/// An upstream that waits for EOF, then sends `size` bytes and closes at once.
final class AnswerAfterEOF: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let size: Int
    init(size: Int) { self.size = size }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            let channel = context.channel
            let reply = channel.allocator.buffer(repeating: 9, count: size)
            context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// Records what reaches the end of a pipeline.
final class InboundRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var log: [String] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        log.append("read \(String(buffer: unwrapInboundIn(data)))")
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { log.append("eof") }
    }
    func channelInactive(context: ChannelHandlerContext) { log.append("inactive") }
}

@Suite struct SniffingHandlerTests {
    /// A sniffing handler on an active embedded channel; `decisions` collects what it decided on,
    /// and each decision waits for `answer` to be completed.
    final class Harness: @unchecked Sendable {
        let channel = EmbeddedChannel()
        var decisions: [SniffOutcome] = []
        var answer: EventLoopPromise<SniffDisposition>!
        let handler: SniffingHandler
        let recorder = InboundRecorder()

        init(timeout: TimeAmount = .seconds(3)) throws {
            var decide: SniffingHandler.Decide!
            handler = SniffingHandler(timeout: timeout) { outcome, channel in decide(outcome, channel) }
            decide = { [unowned self] outcome, channel in
                decisions.append(outcome)
                answer = channel.eventLoop.makePromise()
                return answer.futureResult
            }
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func send(_ text: String) throws { try channel.writeInbound(channel.allocator.buffer(string: text)) }
    }

    @Test func whatArrivesBeforeTheRelayIsReplayedInOrder() throws {
        let h = try Harness()
        try h.send("GET / HTTP/1.0\r\n")
        #expect(h.decisions.isEmpty, "the head is not complete")
        try h.send("Host: a.example\r\n\r\nbody")
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(h.decisions == [SniffOutcome(sniffed: .http(host: "a.example", method: "GET", target: "/"), sawBytes: true)])
        #expect(h.decisions.first?.host == .name("a.example"))
        try h.channel.pipeline.syncOperations.addHandler(h.recorder)
        #expect(h.recorder.log.isEmpty, "held until decided")
        h.answer.succeed(.replay)
        #expect(h.recorder.log == ["read GET / HTTP/1.0\r\n", "read Host: a.example\r\n\r\nbody", "eof"])
        // It removed itself: what comes now goes straight through.
        #expect(throws: (any Error).self) { try h.channel.pipeline.syncOperations.context(handlerType: SniffingHandler.self) }
        try h.send("more")
        #expect(h.recorder.log.last == "read more")
        _ = try? h.channel.finish()
    }

    @Test func aRefusedConnectionsBytesAreDropped() throws {
        let h = try Harness()
        try h.send("\u{16}\u{3}")
        try h.send("\u{1}\u{0}\u{1}\u{2}") // not a ClientHello
        #expect(h.decisions.map(\.sniffed) == [.malformed("handshake is not a ClientHello")])
        #expect(h.decisions.first?.host == .unreadable)
        try h.channel.pipeline.syncOperations.addHandler(h.recorder)
        h.answer.succeed(.discard)
        try h.send("after")
        h.channel.pipeline.fireChannelInactive()
        #expect(h.recorder.log.isEmpty)
        _ = try? h.channel.finish()
    }

    @Test func silenceUntilTheTimeLimitDecidesOnNothing() throws {
        let h = try Harness(timeout: .seconds(3))
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(h.decisions.isEmpty)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(h.decisions == [SniffOutcome(sniffed: .needMoreBytes, sawBytes: false)])
        #expect(h.decisions.first?.host == HostObservation.none)
        h.answer.succeed(.replay)
        _ = try? h.channel.finish()
    }

    @Test func anEOFMidHeadDecidesOnceAsUnreadable() throws {
        let h = try Harness()
        try h.send("GET / HTTP/1.1\r\nHost: cut")
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        h.channel.pipeline.fireChannelInactive()
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(h.decisions == [SniffOutcome(sniffed: .needMoreBytes, sawBytes: true)])
        #expect(h.decisions.first?.host == .unreadable)
        try h.channel.pipeline.syncOperations.addHandler(h.recorder)
        h.answer.succeed(.replay)
        #expect(h.recorder.log == ["read GET / HTTP/1.1\r\nHost: cut", "eof", "inactive"])
    }

    /// Issue 18: a 16 KiB head sent one byte at a time is examined once, not once per byte.
    @Test func aHeadSentOneByteAtATimeIsExaminedOnce() throws {
        let h = try Harness()
        let head = IncrementalSniffingTests.bigHead
        var examined = 0
        for byte in head.dropLast() {
            try h.channel.writeInbound(h.channel.allocator.buffer(bytes: [byte]))
            examined = h.handler.bytesExamined
        }
        #expect(h.decisions.isEmpty)
        #expect(examined >= head.count - 1)
        #expect(examined <= 4 * head.count, "examined \(examined) for \(head.count)")
        try h.channel.writeInbound(h.channel.allocator.buffer(bytes: [head.last!]))
        #expect(h.decisions.map(\.sniffed) == [.http(host: "big.example", method: "GET", target: "/big")])
        try h.channel.pipeline.syncOperations.addHandler(h.recorder)
        h.answer.succeed(.replay)
        #expect(h.recorder.log.count == head.count, "every read replayed")
        _ = try? h.channel.finish()
    }
}

@Suite struct ConnectionRouteTests {
    static func connection() throws -> ProxiedConnection {
        try FixedResolver(target: SocketAddress(ipAddress: "127.0.0.1", port: 9)).resolve(client: SocketAddress(ipAddress: "127.0.0.1", port: 5))!
    }

    @Test func onlyAConnectionWithNothingToInspectIsSpliced() throws {
        var conn = try Self.connection()
        guard case .splice = ConnectionRoute(conn) else { Issue.record("a plain connection is spliced"); return }
        for plan in [InspectionPlan(interceptTLS: true), InspectionPlan(masking: .init("pii")), InspectionPlan(record: true),
                     InspectionPlan(protocol: .postgresql)] {
            conn.inspection = plan
            guard case .inspect = ConnectionRoute(conn) else { Issue.record("\(plan) must be inspected"); continue }
        }
        conn.inspection = .none
        conn.decide = refusing("x.example")
        guard case .inspect = ConnectionRoute(conn) else { Issue.record("a verdict on the hostname is inspected"); return }
        conn.refusal = "contested"
        guard case .refuse(_, "contested") = ConnectionRoute(conn) else { Issue.record("a refusal wins"); return }
    }

    @Test func aPlanNoRegisteredHandlerCarriesOutFindsNone() {
        let handlers = Inspection.handlers()
        #expect(handlers.handler(for: .none, speaking: .http) != nil)
        #expect(handlers.handler(for: .none, speaking: .postgresql) != nil)
        #expect(handlers.handler(for: InspectionPlan(interceptTLS: true), speaking: .tls) != nil)
        #expect(handlers.handler(for: .none, speaking: .tls) != nil, "TLS not intercepted goes to the raw relay")
        #expect(handlers.handler(for: InspectionPlan(interceptTLS: true), speaking: .tcp) == nil)
        #expect(handlers.handler(for: InspectionPlan(record: true), speaking: .tcp) == nil)
        #expect(ProtocolHandlers().handler(for: .none, speaking: .tcp) == nil)
    }
}

@Suite struct TransparentProxyTests {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let logger = Logger(label: "test")

    func startUpstream() async throws -> Channel {
        try await startServer { CountUntilEOF() }
    }

    /// A server on loopback: each connection gets a handler from `handler` (none when nil).
    func startServer(halfClosure: Bool = true,
                     _ handler: (@Sendable () -> any ChannelHandler)? = nil) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .childChannelOption(.allowRemoteHalfClosure, value: halfClosure)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { if let handler { try ch.pipeline.syncOperations.addHandler(handler()) } }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func startProxy(target: SocketAddress?, sink: EventRecorder, connectTimeout: TimeAmount = .seconds(2),
                    decide: (@Sendable (HostObservation) -> ProxyVerdict)? = nil) async throws -> TransparentProxy {
        let proxy = TransparentProxy(configuration: .init(port: 0, hosts: ["127.0.0.1"], connectTimeout: connectTimeout),
                                     group: group, resolver: FixedResolver(target: target, decide: decide), sink: sink,
                                     handlers: Inspection.handlers(), logger: logger)
        try await proxy.start()
        return proxy
    }

    @Test func relaysWithHalfCloseAndReportsBytes() async throws {
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink)
        let payload = [UInt8](repeating: 7, count: 3 << 20)
        let (reply, err) = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            var off = 0
            while off < payload.count {
                let n = payload[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                off += n
            }
            shutdown(fd, Int32(SHUT_WR)) // half-close: the answer comes after our EOF
            return readAll(fd)
        }
        #expect(err == 0)
        #expect(String(decoding: reply, as: UTF8.self) == "got \(3 << 20)\n")
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.bytes == AuditEvent.Bytes(sent: UInt64(3 << 20), received: UInt64(reply.count)))
        #expect(sink.all.filter { $0.type == .connect }.count == 1)
        await proxy.stop()
        try await upstream.close()
    }

    /// On both relays: the epoll one, and NIO's after an inspection.
    @Test(arguments: [false, true])
    func aReplyAfterTheToolsEOFArrivesWholeEvenWhenTheServerClosesFirst(inspected: Bool) async throws {
        // The tool half-closes, the server answers 32 MiB and closes at once, the tool reads slowly:
        // the last bytes must not be dropped when the proxy passes the server's EOF on.
        let size = 32 << 20 // more than the socket buffers hold: the proxy must queue the rest
        let upstream = try await startServer { AnswerAfterEOF(size: size) }
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink,
                                         decide: inspected ? refusing("blocked.example") : nil)
        let (got, err) = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            _ = "x".withCString { write(fd, $0, 1) }
            shutdown(fd, Int32(SHUT_WR))
            usleep(300_000) // slow reader: the proxy holds most of the reply
            let (data, err) = readAll(fd)
            return (data.count, err)
        }
        #expect(err == 0)
        #expect(got == size)
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.bytes?.received == UInt64(size))
        await proxy.stop()
        try await upstream.close()
    }

    @Test func anInspectedRequestForARefusedHostGetsA403AndEndsItsCount() async throws {
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink, decide: refusing("blocked.example"))
        let (reply, _) = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            _ = "GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n".withCString { write(fd, $0, strlen($0)) }
            return readAll(fd)
        }
        #expect(String(decoding: reply, as: UTF8.self).hasPrefix("HTTP/1.1 403"))
        let connects = await sink.waitFor(.connect)
        #expect(connects.first?.verdict == .deny)
        #expect(connects.first?.protocol == .http)
        #expect(connects.first?.reason == "host blocked.example is refused")
        #expect(proxy.counters.values.active == 0, "a refused connection is no longer active")
        await proxy.stop()
        try await upstream.close()
    }

    /// A PostgreSQL client carries no hostname: a verdict that needs one refuses it with a reset
    /// (its event names the protocol), and one that does not relays its startup message whole.
    @Test(arguments: [false, true])
    func aPostgreSQLClientIsRecognised(refused: Bool) async throws {
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink) { host in
            ProxyVerdict(relay: !refused, verdict: refused ? .deny : .redirect, reason: refused ? "no hostname" : "test",
                         policy: "default", rule: nil, destination: .init(ip: "127.0.0.1", port: 0))
        }
        let startup = PostgreSQLSniffingTests.psqlStartup
        let (reply, err) = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            _ = startup.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            shutdown(fd, Int32(SHUT_WR))
            return readAll(fd)
        }
        let connects = await sink.waitFor(.connect)
        #expect(connects.first?.verdict == (refused ? Verdict.deny : .redirect))
        if refused {
            #expect(err == ECONNRESET)
            #expect(reply.isEmpty)
            #expect(connects.first?.protocol == .postgresql)
        } else {
            #expect(err == 0)
            #expect(String(decoding: reply, as: UTF8.self) == "got \(startup.count)\n")
            let closes = await sink.waitFor(.close)
            #expect(closes.first?.bytes?.sent == UInt64(startup.count))
        }
        await proxy.stop()
        try await upstream.close()
    }

    @Test func aConnectionStillBeingInspectedCountsAsActive() async throws {
        // `exec` waits for active connections to end before it stops the proxy: one whose head is
        // still arriving must count, or its events could be lost.
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink, decide: refusing("blocked.example"))
        let fd = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            _ = "GET / HTTP/1.1\r\n".withCString { write(fd, $0, strlen($0)) } // half a head
            return fd
        }
        for _ in 0..<500 where proxy.counters.values.active == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(proxy.counters.values.active == 1)
        close(fd)
        _ = await sink.waitFor(.close)
        #expect(proxy.counters.values.active == 0)
        await proxy.stop()
        try await upstream.close()
    }

    @Test func aFailedUpstreamDialResetsTheClientAndSaysWhy() async throws {
        // a port nothing listens on
        let unused = try await startUpstream()
        let dead = unused.localAddress!
        try await unused.close()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: dead, sink: sink)
        let (writeErr, readErr) = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            // read before the dial, and held for it: never delivered, so never counted as sent
            let w = "GET / HTTP/1.0\r\n\r\n".withCString { write(fd, $0, strlen($0)) }
            // A dial to a closed loopback port fails at once: the reset may come before this
            // write, which then reports it (and the read that follows sees a closed socket).
            let writeErr = w < 0 ? errno : 0
            return (writeErr, readAll(fd).1)
        }
        #expect(writeErr == ECONNRESET || (writeErr == 0 && readErr == ECONNRESET),
                "the tool sees a reset, not a clean EOF (write: \(writeErr), read: \(readErr))")
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.end == .upstreamFailed)
        #expect(closes.first?.error?.contains("refused") == true)
        #expect(closes.first?.bytes?.sent == 0)
        #expect(proxy.counters.values.upstreamFailures == 1)
        #expect(proxy.counters.values.bytesSent == 0)
        await proxy.stop()
    }

    @Test func aConnectionTheGuardDidNotRedirectIsRefused() async throws {
        let sink = EventRecorder()
        let proxy = try await startProxy(target: nil, sink: sink)
        let err = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            return readAll(fd).1
        }
        #expect(err == ECONNRESET)
        #expect(proxy.counters.values.unmapped == 1)
        #expect(sink.all.isEmpty, "no event invents a destination")
        await proxy.stop()
    }

    @Test func manyConcurrentConnectionsAllComplete() async throws {
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink)
        let port = proxy.port
        let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    try await onThread {
                        let fd = try blockingConnect(port: port)
                        defer { close(fd) }
                        let msg = Array("hello \(i)".utf8)
                        _ = msg.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                        shutdown(fd, Int32(SHUT_WR))
                        return String(decoding: readAll(fd).0, as: UTF8.self) == "got \(msg.count)\n"
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(ok == 200)
        let closes = await sink.waitFor(.close, count: 200)
        #expect(closes.count == 200)
        await proxy.stop()
        try await upstream.close()
    }

    @Test func aResetByTheServerReachesTheToolAsAReset() async throws {
        // the server takes the request, then aborts (RST) instead of answering
        let server = try await startServer(halfClosure: false) { AbortOnRead() }
        let sink = EventRecorder()
        let proxy = try await startProxy(target: server.localAddress, sink: sink)
        let err = try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            _ = "GET / HTTP/1.0\r\n\r\n".withCString { write(fd, $0, strlen($0)) }
            return readAll(fd).1
        }
        #expect(err == ECONNRESET, "the tool sees what it would have seen without the proxy")
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.end == .resetBy(.server))
        #expect(closes.first?.bytes?.sent == 18)
        await proxy.stop()
        try await server.close()
    }

    @Test func urgentDataDoesNotStallWhatFollowsIt() async throws {
        // A read stops at TCP's urgent mark with the rest queued behind it, and the rest raises no
        // edge of its own: a relay that took the short read for "empty" would leave it unread
        // (FTP's ABOR is sent this way). The urgent byte itself is not relayed (no SO_OOBINLINE).
        let echo = try await startServer(halfClosure: false) { Echo() }
        let sink = EventRecorder()
        let proxy = try await startProxy(target: echo.localAddress, sink: sink)
        let answers = try await onThread { () -> [String] in
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            var tv = timeval(tv_sec: 3, tv_usec: 0) // a stall fails the test instead of hanging it
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            func readExactly(_ n: Int) -> String {
                var got: [UInt8] = []
                var buf = [UInt8](repeating: 0, count: 64)
                while got.count < n {
                    let r = read(fd, &buf, n - got.count)
                    if r <= 0 { break }
                    got += buf[0..<r]
                }
                return String(decoding: got, as: UTF8.self)
            }
            var answers: [String] = []
            for round in 0..<20 {
                // a burst the relay is likely to find queued whole when it wakes
                _ = "ab".withCString { write(fd, $0, 2) }
                _ = "!".withCString { send(fd, $0, 1, Int32(MSG_OOB)) }
                let tail = "c\(round % 10)"
                _ = tail.withCString { write(fd, $0, 2) }
                answers.append(readExactly(4))
            }
            return answers
        }
        #expect(answers == (0..<20).map { "abc\($0 % 10)" })
        await proxy.stop()
        try await echo.close()
    }

    @Test func aToolsResetAfterItsEOFReachesTheServer() async throws {
        // The server keeps its side open after the tool's EOF; the tool then dies (RST). Its input
        // has ended, so only the reported error says so: the relay must not wait for the server.
        let server = try await startServer()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: server.localAddress, sink: sink)
        try await onThread {
            let fd = try blockingConnect(port: proxy.port)
            _ = "GET / HTTP/1.0\r\n\r\n".withCString { write(fd, $0, strlen($0)) }
            shutdown(fd, Int32(SHUT_WR))
            usleep(100_000) // the EOF is passed on
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.end == .resetBy(.client), "\(closes.map { $0.end?.rawValue ?? "nil" })")
        await proxy.stop()
        try await server.close()
    }

    @Test func aDialThatNeverCompletesTimesOut() async throws {
        // A listener whose accept queue is full drops further SYNs: the dial hangs until the
        // proxy's own deadline.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        _ = listen(listener, 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        var fillers: [Int32] = []
        for _ in 0..<3 { // fill the queue (connects that would hang are left pending)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) } }
            fillers.append(fd)
        }
        defer { fillers.forEach { close($0) } }
        usleep(100_000)
        let sink = EventRecorder()
        let proxy = try await startProxy(target: try SocketAddress(ipAddress: "127.0.0.1", port: port), sink: sink,
                                         connectTimeout: .milliseconds(500))
        let (err, waited) = try await onThread {
            let started = Date()
            let fd = try blockingConnect(port: proxy.port)
            defer { close(fd) }
            let e = readAll(fd).1
            return (e, Date().timeIntervalSince(started))
        }
        #expect(err == ECONNRESET)
        #expect(waited >= 0.4, "reset only when the deadline passed")
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.end == .upstreamFailed)
        #expect(closes.first?.error?.hasSuffix("timed out") == true)
        await proxy.stop()
    }

    @Test func stoppingTheProxyEndsRelayedConnectionsAndReportsThem() async throws {
        let upstream = try await startUpstream()
        let sink = EventRecorder()
        let proxy = try await startProxy(target: upstream.localAddress, sink: sink)
        let fd = try await onThread { try blockingConnect(port: proxy.port) }
        defer { close(fd) }
        _ = await sink.waitFor(.connect)
        for _ in 0..<500 where proxy.counters.values.active == 0 { try await Task.sleep(for: .milliseconds(10)) }
        await proxy.stop()
        let closes = await sink.waitFor(.close)
        #expect(closes.first?.end == .proxyStopped)
        #expect(proxy.counters.values.active == 0)
        let err = try await onThread { readAll(fd).1 }
        #expect(err == ECONNRESET, "the tool learns its connection is gone")
        try await upstream.close()
    }
}

/// An upstream that sends back what it gets.
final class Echo: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// An upstream that aborts the connection (RST) when the first bytes arrive.
final class AbortOnRead: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        (channel as? SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
    }
}
