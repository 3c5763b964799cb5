import BordergateAudit
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
import BordergateInspection
@testable import BordergateProxy

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
        #expect(handlers.handler(for: InspectionPlan(interceptTLS: true), speaking: .tls) is TLSInspector)
        #expect(handlers.handler(for: InspectionPlan(interceptTLS: true), speaking: .tcp) == nil)
        // masking TLS that is not intercepted: nothing can carry it out
        #expect(handlers.handler(for: InspectionPlan(masking: MaskingRulesReference("p")), speaking: .tls) == nil)
        #expect(handlers.handler(for: .none, speaking: .tls) is RawRelay)
        #expect(handlers.handler(for: InspectionPlan(record: true), speaking: .tcp) == nil)
        #expect(ProtocolHandlers().handler(for: .none, speaking: .tcp) == nil)
    }
}
