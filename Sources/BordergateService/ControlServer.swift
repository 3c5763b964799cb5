import BordergateAudit
import BordergateInspection
import BordergateKernel
import BordergatePolicy
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The daemon's control socket: a Unix socket, root (and group `bordergate`) only, speaking
/// ``ControlRequest`` lines. `events` streams history then live events; a slow reader is dropped
/// behind, never waited for (see ``AuditHub``).
final class ControlServer: @unchecked Sendable {
    private let path: String
    private let interceptor: Interceptor
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private var channel: Channel?

    init(path: String, interceptor: Interceptor, logger: Logger) {
        self.path = path
        self.interceptor = interceptor
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    func start() async throws {
        let dir = (path as NSString).deletingLastPathComponent
        if mkdir(dir, 0o750) != 0 && errno != EEXIST {
            throw ServiceError("cannot create \(dir) for the control socket: \(String(cString: strerror(errno))); choose another control socket path")
        }
        unlink(path) // a stale socket of a dead daemon; a live one was ruled out by the caller
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RequestLineHandler { [self] request, channel in
                        await self.handle(request, on: channel)
                    })
                }
            }
        let old = umask(0o117)
        defer { umask(old) }
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
        } catch {
            throw ServiceError("cannot listen on the control socket \(path): \(error); choose another control socket path")
        }
        chmod(path, 0o660)
        if let grp = getgrnam("bordergate") {
            chown(path, 0, grp.pointee.gr_gid)
            chown(dir, 0, grp.pointee.gr_gid)
        }
    }

    func stop() async {
        try? await channel?.close()
        unlink(path)
        try? await group.shutdownGracefully()
    }

    private func handle(_ line: Data, on channel: Channel) async {
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: line) else {
            await reply(ControlResponse(ok: false, error: "the control socket did not understand that request; use the bordergate CLI of the same version"), on: channel)
            return
        }
        switch request.command {
        case .ping:
            await reply(ControlResponse(ok: true, message: "pid \(getpid())"), on: channel)
        case .status:
            await reply(ControlResponse(ok: true, status: interceptor.status()), on: channel)
        case .attach:
            guard let cg = request.cgroup else {
                await reply(ControlResponse(ok: false, error: "attach needs a cgroup"), on: channel)
                return
            }
            do {
                let (dir, id, policy) = try interceptor.attach(cgroup: cg, policy: request.policy)
                await reply(ControlResponse(ok: true, message: "guarding \(interceptor.cgroups.relativeName(ofDirectory: dir)) with policy \(policy) (cgroup id \(id))"), on: channel)
            } catch {
                await reply(ControlResponse(ok: false, error: "\(error)"), on: channel)
            }
        case .detach:
            if request.all == true {
                var names: [String] = []
                for g in interceptor.status().guards {
                    if (try? interceptor.detach(cgroup: g.cgroup)) == true || interceptor.detach(cgroupID: g.cgroupID) {
                        names.append(g.cgroup)
                    }
                }
                await reply(ControlResponse(ok: true, message: names.isEmpty ? "nothing was guarded" : "detached \(names.joined(separator: ", "))"), on: channel)
                return
            }
            guard let cg = request.cgroup else {
                await reply(ControlResponse(ok: false, error: "detach needs a cgroup, or all of them"), on: channel)
                return
            }
            do {
                let found = try interceptor.detach(cgroup: cg)
                await reply(found ? ControlResponse(ok: true, message: "detached \(cg)")
                                  : ControlResponse(ok: false, error: "\(cg) is not guarded (see 'bordergate status')"), on: channel)
            } catch {
                await reply(ControlResponse(ok: false, error: "\(error)"), on: channel)
            }
        case .reload:
            do {
                let summary = try interceptor.reload(trigger: "bordergate reload")
                await reply(ControlResponse(ok: true, message: summary), on: channel)
            } catch {
                await reply(ControlResponse(ok: false, error: "\(error)"), on: channel)
            }
        case .grant:
            guard let cg = request.cgroup, let allow = request.allow, let seconds = request.seconds, let reason = request.reason else {
                await reply(ControlResponse(ok: false, error: "grant needs a cgroup, what to allow, a duration and a reason"), on: channel)
                return
            }
            do {
                let g = try interceptor.grant(cgroup: cg, allow: allow, seconds: seconds, reason: reason, user: request.user)
                await reply(ControlResponse(ok: true, message: "grant \(g.id): \(cg) may reach \(g.allow) until \(AuditTime.format(Date(timeIntervalSince1970: g.expires)))"), on: channel)
            } catch {
                await reply(ControlResponse(ok: false, error: "\(error)"), on: channel)
            }
        case .pending:
            let held = interceptor.approvals?.pending ?? []
            let lines = held.map { h in
                "\(h.id)  \(h.policy)  \(h.rule)  held \(AuditTime.format(h.heldAt)), refused at \(AuditTime.format(h.expires))  connection \(h.connection)\n    \(h.statement)"
            }
            await reply(ControlResponse(ok: true, message: lines.isEmpty ? "no statement is held" : lines.joined(separator: "\n")), on: channel)
        case .approve, .reject:
            guard let id = request.request else {
                await reply(ControlResponse(ok: false, error: "\(request.command.rawValue) needs the id of a held statement (bordergate pending)"), on: channel)
                return
            }
            let who = request.user.map { " by \($0)" } ?? ""
            let reason = request.reason.map { $0 + who } ?? (who.isEmpty ? nil : String(who.dropFirst()))
            let answer: SQLApprovals.Answer = request.command == .approve ? .approved(reason: reason) : .rejected(reason: reason)
            if let h = interceptor.approvals?.answer(id, answer) {
                await reply(ControlResponse(ok: true, message: "\(request.command == .approve ? "approved" : "rejected") \(id): \(h.statement)"), on: channel)
            } else {
                await reply(ControlResponse(ok: false, error: "no statement is held under \(id) (answered already, timed out, or its connection ended; see 'bordergate pending')"), on: channel)
            }
        case .events:
            await streamEvents(filter: request.filter ?? EventFilter(), follow: request.follow ?? false, on: channel)
        }
    }

    private func reply(_ response: ControlResponse, on channel: Channel) async {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        var data = (try? encoder.encode(response)) ?? Data()
        data.append(UInt8(ascii: "\n"))
        try? await channel.writeAndFlush(ByteBuffer(bytes: data))
        try? await channel.close()
    }

    private func streamEvents(filter: EventFilter, follow: Bool, on channel: Channel) async {
        let subscription = follow ? interceptor.hub.subscribe(filter: filter) : nil
        // A reader that goes away while nothing matches would otherwise hold its subscription
        // until the next matching event.
        channel.closeFuture.whenComplete { _ in subscription?.cancel() }
        // Without a subscription, history is all there is: let the kernel's events from before the
        // request be handled (two ring drains, ~20 ms) and what is queued reach the log first. Off
        // the concurrency pool: the event pump that has to run meanwhile is on it.
        if subscription == nil {
            let interceptor = self.interceptor, logger = self.logger
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    if !interceptor.settleKernelEvents(timeout: 2) {
                        logger.warning("events: kernel events from before the request were not all handled within 2 s; the history may lack the latest")
                    }
                    interceptor.hub.flush()
                    done.resume()
                }
            }
        }
        let end = subscription?.historyEnd ?? interceptor.hub.log.currentSize
        do {
            // rotated files first (whole), then the current one up to where the subscription
            // begins (a rotation while this reads can repeat or skip the events of one batch)
            let path = interceptor.hub.log.path
            for (file, limit) in AuditLog.rotatedHistory(logPath: path, since: filter.since).map({ ($0, UInt64?.none) }) + [(path, end)] {
                var reader = try AuditLog.Reader(path: file, upTo: limit, filter: filter)
                while let batch = try reader.next() {
                    var out = ByteBuffer()
                    for (_, line) in batch {
                        out.writeBytes(line)
                        out.writeInteger(UInt8(ascii: "\n"))
                    }
                    try await channel.writeAndFlush(out)
                }
            }
            try await channel.writeAndFlush(Self.notice(ControlNotice(control: "history-end")))
            if let subscription {
                for await item in subscription.items {
                    switch item {
                    case .event(_, let line):
                        var buf = ByteBuffer(bytes: line)
                        buf.writeInteger(UInt8(ascii: "\n"))
                        try await channel.writeAndFlush(buf)
                    case .missed(let n):
                        try await channel.writeAndFlush(Self.notice(ControlNotice(control: "missed", count: n)))
                    }
                    if !channel.isActive { break }
                }
            }
        } catch {
            logger.debug("control: events reader went away: \(error)")
        }
        try? await channel.close()
    }

    static func notice(_ n: ControlNotice) -> ByteBuffer {
        var data = (try? JSONEncoder().encode(n)) ?? Data()
        data.append(UInt8(ascii: "\n"))
        return ByteBuffer(bytes: data)
    }
}

/// Reads one request line, then hands the channel to an async handler.
private final class RequestLineHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private var buffer = ByteBuffer()
    private var started = false
    private let onRequest: @Sendable (Data, Channel) async -> Void

    init(onRequest: @escaping @Sendable (Data, Channel) async -> Void) {
        self.onRequest = onRequest
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !started else { return }
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        if buffer.readableBytes > 1 << 20 {
            context.close(promise: nil) // a request is never this large
            return
        }
        guard let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return }
        let line = Data(buffer.readableBytesView[..<nl])
        started = true
        let channel = context.channel
        let handler = onRequest
        Task { await handler(line, channel) }
    }
}
