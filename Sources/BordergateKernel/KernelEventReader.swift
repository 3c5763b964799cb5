import CBordergateABI
import CLibBPF
import CBordergateSys
import Foundation
import Logging
import Synchronization

/// Delivers the `events` and `refusals` ring buffers as one `AsyncStream`.
///
/// The programs submit without waking the reader (a wakeup per event costs a third of the connect
/// rate), so a dedicated thread drains the rings every few milliseconds and also wakes at once when
/// a ring passes its fill threshold.
///
/// The stream holds at most ``backlogLimit`` events the consumer has not taken (``consumed()``):
/// past it the reader stops draining, so a consumer that falls behind leaves events in the
/// kernel's rings, where a full ring is counted per class (`event_drops`) and reported, instead of
/// piling up in the daemon's heap.
public final class KernelEventReader: @unchecked Sendable {
    private final class Sink {
        let continuation: AsyncStream<KernelConnectEvent>.Continuation
        /// Events handed to the stream; only the reader thread touches it.
        var enqueued: UInt64 = 0
        /// Events the stream refused (never expected: the backlog stops the reader first).
        let dropped = Atomic<UInt64>(0)
        /// Events the consumer has taken.
        let consumed = Atomic<UInt64>(0)
        init(_ c: AsyncStream<KernelConnectEvent>.Continuation) { continuation = c }
        var backlog: UInt64 { enqueued &- consumed.load(ordering: .acquiring) }
    }

    /// Events read from the rings that the consumer has not taken yet, at most.
    public static let backlogLimit: UInt64 = 16_384

    public let events: AsyncStream<KernelConnectEvent>
    private let ring: OpaquePointer
    private let sink: Unmanaged<Sink>
    /// The same sink, held for the consumer's ``consumed()`` calls after ``stop()`` released the ring's reference.
    private let sinkRef: Sink
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

    init(mapFDs: [Int32], logger: Logger) throws {
        let (stream, continuation) = AsyncStream<KernelConnectEvent>.makeStream(
            bufferingPolicy: .bufferingOldest(Int(Self.backlogLimit) + 16))
        events = stream
        let held = Sink(continuation)
        sinkRef = held
        sink = Unmanaged.passRetained(held)
        let callback: ring_buffer_sample_fn = { ctx, data, size in
            guard let ctx, let data, size >= MemoryLayout<bg_connect_event>.size else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(ctx).takeUnretainedValue()
            let raw = data.loadUnaligned(as: bg_connect_event.self)
            if case .enqueued = sink.continuation.yield(KernelConnectEvent(raw)) {
                sink.enqueued &+= 1
            } else {
                sink.dropped.add(1, ordering: .relaxed)
            }
            // this record is consumed either way; a negative return stops before the next one
            return sink.backlog >= KernelEventReader.backlogLimit ? -1 : 0
        }
        guard let first = mapFDs.first, let ring = ring_buffer__new(first, callback, sink.toOpaque(), nil) else {
            let err = errno
            sink.release()
            throw KernelError.system("opening the events ring buffer", errno: err)
        }
        for fd in mapFDs.dropFirst() where ring_buffer__add(ring, fd, callback, sink.toOpaque()) != 0 {
            let err = errno
            ring_buffer__free(ring)
            sink.release()
            throw KernelError.system("opening the refusals ring buffer", errno: err)
        }
        self.ring = ring
        let t = Thread { [self] in
            bg_name_thread("bg-ringbuf") // what top -H and perf show
            self.drainLoop()
        }
        thread = t
        t.start()
    }

    /// The consumer took one event from ``events``.
    public func consumed() {
        sinkRef.consumed.add(1, ordering: .releasing)
    }

    /// Events the stream could not hold (reported as a `drop` event by the daemon).
    public var droppedInHost: UInt64 { sinkRef.dropped.load(ordering: .relaxed) }

    private func drainLoop() {
        let s = sink.takeUnretainedValue()
        while !stopFlag.isSet {
            if s.backlog >= Self.backlogLimit {
                usleep(1_000) // the consumer is behind: leave the rest in the kernel's rings
                continue
            }
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
