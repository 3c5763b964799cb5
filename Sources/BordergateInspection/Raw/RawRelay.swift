import BordergateAudit
import BordergateProxy
import BordergateRecording
import Foundation
import Logging
import NIOCore

/// Relays the bytes as they are, both ways, with back-pressure and half-close: what an inspected
/// connection gets when no handler reads its protocol (TLS that is not intercepted, SSH, a
/// PostgreSQL connection so far). It carries out plans that ask for nothing but the relay
/// (``InspectionPlan/isOpaque``); the proxy also runs it for a plan that allows its content
/// through uninspected. Its session is recorded as metadata only (sizes, timings, how it ended):
/// bytes nobody decoded are never stored.
public struct RawRelay: ProtocolHandler {
    public struct Value: Sendable {
        let connection: InspectedConnection
        let recording: any SessionRecording
    }

    let recorder: any SessionRecorder

    public init(recorder: any SessionRecorder = DiscardingRecorder()) {
        self.recorder = recorder
    }

    public func supports(_ plan: InspectionPlan) -> Bool { plan.isOpaque }

    public func setup(connection: InspectedConnection, logger: Logger) throws -> Value {
        try connection.addRawRelay()
        let c = connection.connection
        let recording = recorder.open(SessionStart(
            id: c.connectionID, startedAt: c.connectedAt, process: c.process, destination: c.destination,
            policy: c.policy, protocol: WireProtocol(ProxyProtocol(connection.sniffed)), content: false))
        return Value(connection: connection, recording: recording)
    }

    /// The relay runs in the pipelines; this only waits for both sides to close.
    public func handle(value: Value, logger: Logger) async {
        try? await value.connection.client.closeFuture.get()
        try? await value.connection.upstream.closeFuture.get()
        value.recording.close(SessionEnd(endedAt: Date(), bytes: value.connection.bytes, ending: nil))
    }
}
