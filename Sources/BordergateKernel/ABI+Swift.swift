import CBordergateABI
import Foundation

/// Reads a fixed-size C `char[N]` field (imported as a tuple) as a String.
@inline(__always)
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix(while: { $0 != 0 })
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// An IP address as the kernel side stores it: 16 bytes, IPv4 mapped into IPv6.
///
/// Held inline (no array): a few of these are made for every proxied connection.
public struct KernelAddress: Hashable, Sendable, CustomStringConvertible {
    public typealias Raw = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)
    /// The 16 bytes, in network order, as the two halves of the ABI's `__u8 addr[16]`.
    private var high: UInt64
    private var low: UInt64

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16)
        (high, low) = bytes.withUnsafeBytes { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }

    /// From any 16-byte value: `in6_addr`, the ABI's `addr[16]`.
    public init<T>(tuple: T) {
        precondition(MemoryLayout<T>.size == 16)
        (high, low) = withUnsafeBytes(of: tuple) { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }

    /// An IPv4 address (in network order, as in `sin_addr`), mapped.
    public init(ipv4 networkOrder: UInt32) {
        high = 0
        var l: UInt64 = 0
        withUnsafeMutableBytes(of: &l) { b in
            b[2] = 0xff
            b[3] = 0xff
            b.storeBytes(of: networkOrder, toByteOffset: 4, as: UInt32.self)
        }
        low = l
    }

    /// The 16 bytes as the ABI's `__u8 addr[16]` imports.
    public var raw: Raw {
        var t: Raw = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &t) {
            $0.storeBytes(of: high, as: UInt64.self)
            $0.storeBytes(of: low, toByteOffset: 8, as: UInt64.self)
        }
        return t
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: raw) { Array($0) } }

    /// The IPv4 address in network order, as `sin_addr` wants it (meaningful when mapped).
    public var ipv4NetworkOrder: UInt32 {
        withUnsafeBytes(of: low) { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
    }

    public var isIPv4Mapped: Bool {
        // bytes 0-9 zero, 10-11 0xff (byte by byte: the halves are in memory order, not numbers)
        high == 0 && withUnsafeBytes(of: low) { $0[0] == 0 && $0[1] == 0 && $0[2] == 0xff && $0[3] == 0xff }
    }

    /// The address as people write it: dotted quad for IPv4 (mapped or not), RFC 5952 for IPv6.
    public var description: String {
        if isIPv4Mapped {
            // by hand: this runs for every proxied connection
            var out: [UInt8] = []
            out.reserveCapacity(15)
            withUnsafeBytes(of: low) { half in
                for i in 4..<8 {
                    if i > 4 { out.append(UInt8(ascii: ".")) }
                    let b = half[i]
                    if b >= 100 { out.append(48 + b / 100) }
                    if b >= 10 { out.append(48 + b / 10 % 10) }
                    out.append(48 + b % 10)
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var addr = raw
        inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count))
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Parses "203.0.113.7", "2001:db8::1" or "::ffff:203.0.113.7".
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4: v4.s_addr)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self.init(tuple: v6)
            return
        }
        return nil
    }
}

/// The key the proxy uses to find a redirected connection: the client's own address and port.
public func tupleKey(address: KernelAddress, port: UInt16) -> bg_tuple_key {
    var key = bg_tuple_key()
    key.addr = address.raw
    key.port = port
    return key
}

/// Who made a connection and when, as the kernel saw it in connect().
public struct ConnectIdentity: Sendable, Equatable {
    public var pid: UInt32
    public var tgid: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var comm: String
    public var cgroupID: UInt64
    public var cookie: UInt64
    /// CLOCK_MONOTONIC nanoseconds of the connect().
    public var monotonicNanos: UInt64

    init(_ id: bg_identity) {
        pid = id.pid
        tgid = id.tgid
        uid = id.uid
        gid = id.gid
        comm = cString(id.comm)
        cgroupID = id.cgroup_id
        cookie = id.cookie
        monotonicNanos = id.time_ns
    }
}

public enum KernelVerdict: String, Sendable {
    case redirect, pass, deny, none

    init(raw: UInt32) {
        switch raw {
        case UInt32(BG_VERDICT_REDIRECT.rawValue): self = .redirect
        case UInt32(BG_VERDICT_PASS.rawValue): self = .pass
        case UInt32(BG_VERDICT_DENY.rawValue): self = .deny
        default: self = .none
        }
    }
}

public enum KernelReason: Sendable {
    case noProxy, noPolicy, policy, other

    init(raw: UInt32) {
        switch raw {
        case UInt32(BG_REASON_NO_PROXY.rawValue): self = .noProxy
        case UInt32(BG_REASON_NO_POLICY.rawValue): self = .noPolicy
        case UInt32(BG_REASON_POLICY.rawValue): self = .policy
        default: self = .other
        }
    }
}

/// The kernel's reason for a verdict, in words for the audit log.
public func kernelReasonText(_ raw: UInt32) -> String {
    switch raw {
    case UInt32(BG_REASON_NO_PROXY.rawValue): return "no proxy is configured for the guard: refused (fail closed)"
    case UInt32(BG_REASON_NO_POLICY.rawValue): return "no compiled policy decides this connection: refused (fail closed)"
    case UInt32(BG_REASON_POLICY.rawValue): return "decided by the cgroup's policy"
    case UInt32(BG_REASON_NO_STATE.rawValue): return "the kernel could not keep the redirect's state (out of memory): refused (fail closed)"
    case UInt32(BG_REASON_NOT_PROXY.rawValue): return "what listens on the proxy's port is not Bordergate's proxy: refused (fail closed)"
    case UInt32(BG_REASON_OTHER_NETNS.rawValue): return "the socket is in another network namespace than the proxy, where 127.0.0.1 is not Bordergate: refused (fail closed)"
    case UInt32(BG_REASON_PROXY_LIMIT.rawValue): return "the cgroup or the user already holds as many proxied connections as the config allows (proxy: max-connections-per-cgroup, max-connections-per-uid): refused"
    case UInt32(BG_REASON_AUDIT_BLOCKED.rawValue): return "the daemon cannot write its audit log: refused until it can (fail closed)"
    default: return ""
    }
}

/// What the kernel remembers of a redirected connection (`orig_by_tuple`).
public struct OriginalConnection: Sendable, Equatable {
    public var identity: ConnectIdentity
    public var destination: KernelAddress
    public var port: UInt16
    /// AF_INET or AF_INET6: the family of the tool's own socket.
    public var family: UInt16
    public var verdict: KernelVerdict
    /// The compiled policy the kernel used; the proxy finishes the decision with it.
    public var policySlot: UInt32
    /// The client's address and port came round while an earlier connection from them waited
    /// unaccepted: the proxy cannot tell which accepted connection this record belongs to.
    public var contested: Bool

    init(_ o: bg_orig) {
        identity = ConnectIdentity(o.id)
        destination = KernelAddress(tuple: o.dst.addr)
        port = o.dst.port
        family = o.dst.family
        verdict = KernelVerdict(raw: o.verdict)
        policySlot = o.policy_slot
        contested = o.flags & UInt32(BG_ORIG_CONTESTED) != 0
    }
}

/// One record of the `events` ring buffer.
public struct KernelConnectEvent: Sendable, Equatable {
    public var verdict: KernelVerdict
    public var reason: UInt32
    public var ipProtocol: UInt32
    public var identity: ConnectIdentity
    public var destination: KernelAddress
    public var port: UInt16
    public var family: UInt16
    /// 0 when the process table did not know the process (it predates the guard).
    public var ppid: UInt32
    /// Empty when the process table did not know the process.
    public var exe: String
    /// The compiled policy that decided; user space names its rule and reason from it.
    public var policySlot: UInt32
    /// The enforce-mode verdict was deny; the policy audits, so it passed.
    public var audited: Bool
    /// A redirect that reached the proxy's listener, whose client address and port came round
    /// before the proxy accepted it (see `OriginalConnection.contested`).
    public var superseded: Bool = false
    public var reasonKind: KernelReason { KernelReason(raw: reason) }

    /// A redirect the proxy never claimed, as the kernel's event for it would read (the process
    /// table fills in executable and parent).
    public init(unclaimed o: bg_orig) {
        verdict = KernelVerdict(raw: o.verdict)
        reason = o.reason
        ipProtocol = UInt32(IPPROTO_TCP)
        identity = ConnectIdentity(o.id)
        destination = KernelAddress(tuple: o.dst.addr)
        port = o.dst.port
        family = o.dst.family
        ppid = 0
        exe = ""
        policySlot = o.policy_slot
        audited = o.flags & BG_ROW_AUDIT != 0
    }

    public init(_ e: bg_connect_event) {
        verdict = KernelVerdict(raw: e.verdict)
        reason = e.reason
        ipProtocol = e.protocol
        identity = ConnectIdentity(e.id)
        destination = KernelAddress(tuple: e.dst.addr)
        port = e.dst.port
        family = e.dst.family
        ppid = e.ppid
        exe = cString(e.exe)
        policySlot = e.policy_slot
        audited = e.flags & BG_ROW_AUDIT != 0
        superseded = e.verdict == UInt32(BG_VERDICT_REDIRECT.rawValue) && e.flags & UInt32(BG_ORIG_SUPERSEDED) != 0
    }
}

/// A process-table entry.
public struct ProcessRecord: Sendable, Equatable {
    public var ppid: UInt32
    public var exe: String
    public var exited: Bool
    /// CLOCK_MONOTONIC nanoseconds since which the record names this process id (its exec, or
    /// the fork that made it): a connect made earlier was made by another program.
    public var since: UInt64
    /// The executed file's device (kernel encoding: major << 20 | minor) and inode; 0 when the
    /// kernel could not read them.
    public var exeDevice: UInt32
    public var exeInode: UInt64

    init(_ p: bg_proc) {
        ppid = p.ppid
        exe = cString(p.exe)
        exited = p.exit_time_ns != 0
        since = p.since_ns
        exeDevice = p.exe_dev
        exeInode = p.exe_ino
    }

    public init(ppid: UInt32, exe: String, exited: Bool, since: UInt64, exeDevice: UInt32 = 0, exeInode: UInt64 = 0) {
        self.ppid = ppid
        self.exe = exe
        self.exited = exited
        self.since = since
        self.exeDevice = exeDevice
        self.exeInode = exeInode
    }

    /// Whether the record names whoever made a connect at `monotonicNanos`.
    public func names(connectAt monotonicNanos: UInt64) -> Bool { since <= monotonicNanos }
}
