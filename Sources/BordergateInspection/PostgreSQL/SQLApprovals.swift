import Foundation
import NIOConcurrencyHelpers

/// Statements held by a `review` guardrail until someone answers (`bordergate approve ID`,
/// `bordergate reject ID`) or their `review-timeout` passes. Shared by the daemon's control
/// server and every PostgreSQL connection; the answer runs on the connection's event loop.
public final class SQLApprovals: Sendable {
    public struct Held: Sendable, Codable, Equatable {
        public var id: String
        public var connection: String
        public var policy: String
        public var rule: String
        /// Normalised: never a constant.
        public var statement: String
        public var heldAt: Date
        public var expires: Date
    }

    public enum Answer: Sendable, Equatable {
        case approved(reason: String?)
        case rejected(reason: String?)
        case timedOut
    }

    private let held = NIOLockedValueBox<[String: (info: Held, answer: @Sendable (Answer) -> Void)]>([:])

    public init() {}

    /// Registers a held statement; `answer` is called once, with the first answer.
    func hold(_ info: Held, answer: @escaping @Sendable (Answer) -> Void) {
        held.withLockedValue { $0[info.id] = (info, answer) }
    }

    /// Answers a held statement; nil when no statement is held under that id (answered already,
    /// timed out, or its connection ended).
    @discardableResult
    public func answer(_ id: String, _ answer: Answer) -> Held? {
        guard let entry = held.withLockedValue({ $0.removeValue(forKey: id) }) else { return nil }
        entry.answer(answer)
        return entry.info
    }

    /// Forgets a statement without answering it (its connection ended).
    func forget(_ id: String) { _ = held.withLockedValue { $0.removeValue(forKey: id) } }

    public var pending: [Held] { held.withLockedValue { $0.values.map(\.info) }.sorted { $0.heldAt < $1.heldAt } }
}
