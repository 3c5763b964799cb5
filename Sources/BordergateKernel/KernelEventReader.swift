import CBordergateABI
import CLibBPF
import CBordergateSys
import Foundation
import Logging

/// Delivers the `events` ring buffer as an `AsyncStream`.
///
/// The programs submit without waking the reader (a wakeup per event costs a third of the connect
/// rate), so a dedicated thread drains the ring every few milliseconds and also wakes at once when
/// the ring passes its fill threshold.
public final class KernelEventReader: @unchecked Sendable {
    private final class Sink {
        let continuation: AsyncStream<KernelConnectEvent>.Continuation
        /// Events handed to the stream; only the reader thread touches it.
        var enqueued: UInt64 = 0
        init(_ c: AsyncStream<KernelConnectEvent>.Continuation) { continuation = c }
    }

    public let events: AsyncStream<KernelConnectEvent>
    private let ring: OpaquePointer
    private let sink: Unmanaged<Sink>
    private let stopFlag = ManagedAtomicFlag()
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    /// Completed drains and the events enqueued by the last one, for ``barrier(timeout:)``.
    private let progress = NSCondition()
    private var drains: UInt64 = 0
    private var enqueuedAtLastDrain: UInt64 = 0
    private var finished = false

    /// How long the reader sleeps between drains when no wakeup comes.
    public static let drainIntervalMillis: Int32 = 10

    init(mapFD: Int32, logger: Logger) throws {
        let (stream, continuation) = AsyncStream<KernelConnectEvent>.makeStream(bufferingPolicy: .bufferingOldest(1 << 20))
        events = stream
        sink = Unmanaged.passRetained(Sink(continuation))
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            guard let ctx, let data, size >= MemoryLayout<bg_connect_event>.size else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(ctx).takeUnretainedValue()
            let raw = data.loadUnaligned(as: bg_connect_event.self)
            if case .enqueued = sink.continuation.yield(KernelConnectEvent(raw)) { sink.enqueued &+= 1 }
            return 0
        }
        guard let ring = ring_buffer__new(mapFD, callback, sink.toOpaque(), nil) else {
            let err = errno
            sink.release()
            throw KernelError.system("opening the events ring buffer", errno: err)
        }
        self.ring = ring
        let t = Thread { [self] in
            bg_name_thread("bg-ringbuf") // what top -H and perf show
            self.drainLoop()
        }
        thread = t
        t.start()
    }

    private func drainLoop() {
        while !stopFlag.isSet {
            _ = ring_buffer__poll(ring, Self.drainIntervalMillis)
            _ = ring_buffer__consume(ring)
            drained(finished: false)
        }
        _ = ring_buffer__consume(ring)
        drained(finished: true)
        done.signal()
    }

    private func drained(finished last: Bool) {
        let n = sink.takeUnretainedValue().enqueued
        progress.lock()
        drains &+= 1
        enqueuedAtLastDrain = n
        finished = finished || last
        progress.broadcast()
        progress.unlock()
    }

    /// Waits until every event the kernel submitted before the call is in the stream, and returns
    /// how many events the stream has been given by then (nil if the reader stopped or the wait
    /// ran out). A drain already under way may have looked at the ring before the call, so the
    /// one after it is the first that certainly sees everything: about two drain intervals.
    public func barrier(timeout: TimeInterval) -> UInt64? {
        let deadline = Date().addingTimeInterval(timeout)
        progress.lock()
        defer { progress.unlock() }
        let target = drains &+ 2
        while drains < target && !finished {
            guard progress.wait(until: deadline) else { return nil }
        }
        return drains >= target ? enqueuedAtLastDrain : nil
    }

    /// Stops the reader after one last drain, and finishes the stream.
    public func stop() {
        guard !stopFlag.isSet else { return }
        stopFlag.set()
        done.wait()
        ring_buffer__free(ring)
        sink.takeUnretainedValue().continuation.finish()
        sink.release()
    }
}

/// A set-once flag shared between threads.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
