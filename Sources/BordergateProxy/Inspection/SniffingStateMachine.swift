import NIOCore

/// What the first bytes said, once the sniffing handler stops reading: the sniffer's answer and
/// whether anything arrived at all.
struct SniffOutcome: Sendable, Equatable {
    let sniffed: SniffedProtocol
    let sawBytes: Bool

    /// The hostname, as a verdict needs it.
    var host: HostObservation {
        switch sniffed {
        case .tls(let name?), .http(let name?, _, _): .name(name)
        case .tls(nil), .http(nil, _, _), .postgresql, .other: .none
        case .needMoreBytes: sawBytes ? .unreadable : .none // cut off mid-head, or silent
        case .malformed: .unreadable
        }
    }
}

/// What becomes of what the sniffing handler held, once the connection is decided.
enum SniffDisposition: Sendable {
    /// The pipeline behind is built: replay everything, in order, and step aside.
    case replay
    /// The connection is refused: drop what was held and whatever comes after.
    case discard
}

/// The states of ``SniffingHandler``, after NIOTLS's `ProtocolNegotiationHandlerStateMachine`:
/// buffer while sniffing, decide once, then replay (or discard) and finish. It keeps every inbound
/// event (reads, read completions, EOF, inactivity) in order, because NIO delivers an early EOF's
/// bytes even with autoRead off and nothing else would keep them.
struct SniffingStateMachine {
    enum Held {
        case read(NIOAny)
        case readComplete
        case event(Any)
        case inactive
    }

    /// The held events and the sniffer are stored properties of their own, mutated in place (an
    /// enum payload would be copied on every read: quadratic for a head sent a byte at a time).
    enum State: Equatable {
        /// Reading the first bytes.
        case sniffing
        /// The outcome is out; waiting for what to do with what is held.
        case deciding
        /// Replaying; what arrives meanwhile is replayed after.
        case unbuffering
        /// Replayed, or discarding.
        case finished(discarding: Bool)
    }

    enum Action: Equatable {
        /// Ask the channel for more bytes.
        case read
        /// Stop reading and decide on this.
        case decide(SniffOutcome)
        /// Pass the event on (only once finished, not discarding).
        case forward
        case none
    }

    private(set) var state = State.sniffing
    private var held = CircularBuffer<Held>()
    private var sniffer = IncrementalSniffer()

    /// Work the sniffer did so far (for tests).
    var bytesExamined: Int { sniffer.bytesExamined }

    /// Bytes arrived (`data` wraps `bytes`).
    mutating func channelRead(_ data: NIOAny, bytes: ByteBuffer) -> Action {
        let action = hold(.read(data))
        guard state == .sniffing else { return action }
        let sniffed = sniffer.feed(bytes.readableBytesView)
        if case .needMoreBytes = sniffed, sniffer.head.count < ProtocolSniffer.maximumHeadBytes { return .read }
        return decide()
    }

    mutating func channelReadComplete() -> Action { hold(.readComplete) }

    /// An inbound user event; an input-closed EOF ends the sniffing.
    mutating func userInboundEvent(_ event: Any) -> Action {
        let ended = (event as? ChannelEvent).map { if case .inputClosed = $0 { true } else { false } } ?? false
        let action = hold(.event(event))
        return ended ? end() ?? action : action
    }

    mutating func channelInactive() -> Action {
        let action = hold(.inactive)
        return end() ?? action
    }

    /// The time for the first bytes is up: decide on what came.
    mutating func timedOut() -> Action { end() ?? .none }

    /// The connection is decided. Answers whether to start replaying.
    mutating func decided(_ disposition: SniffDisposition) -> Bool {
        guard state == .deciding else { return false }
        switch disposition {
        case .replay:
            state = .unbuffering
            return true
        case .discard:
            state = .finished(discarding: true)
            held.removeAll()
            return false
        }
    }

    /// The next held event to replay; nil when all are (the handler then removes itself).
    mutating func nextToReplay() -> Held? {
        guard state == .unbuffering else { return nil }
        guard let next = held.popFirst() else {
            state = .finished(discarding: false)
            return nil
        }
        return next
    }

    private mutating func decide() -> Action {
        state = .deciding
        let outcome = SniffOutcome(sniffed: sniffer.result, sawBytes: !sniffer.head.isEmpty)
        sniffer = IncrementalSniffer() // the head is in `held`; no need to keep it twice
        return .decide(outcome)
    }

    /// The stream ended (EOF or inactive) or time ran out: while sniffing, decide on what came.
    private mutating func end() -> Action? {
        guard state == .sniffing else { return nil }
        return decide()
    }

    private mutating func hold(_ h: Held) -> Action {
        switch state {
        case .sniffing, .deciding, .unbuffering:
            held.append(h)
            return .none
        case .finished(let discarding):
            return discarding ? .none : .forward
        }
    }
}
