import BordergateProxy
import Logging
import NIOCore

/// Relays the bytes as they are, both ways, with back-pressure and half-close: what every
/// inspected connection gets while no handler looks at its protocol. It carries out only plans
/// that ask for nothing but the relay (``InspectionPlan/isOpaque``).
public struct RawRelay: ProtocolHandler {
    public struct Value: Sendable {
        let client: Channel
        let upstream: Channel
    }

    public init() {}

    public func supports(_ plan: InspectionPlan) -> Bool { plan.isOpaque }

    public func setup(connection: InspectedConnection, logger: Logger) throws -> Value {
        try connection.addRawRelay()
        return Value(client: connection.client, upstream: connection.upstream)
    }

    /// The relay runs in the pipelines; this only waits for both sides to close.
    public func handle(value: Value, logger: Logger) async {
        try? await value.client.closeFuture.get()
        try? await value.upstream.closeFuture.get()
    }
}
