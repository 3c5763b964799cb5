import BordergateAudit
import Foundation

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
    /// Which side said EOF first: names how the connection ended.
    var firstEOF: Side?
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
