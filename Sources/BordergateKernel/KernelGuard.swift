import CBordergateABI
import CBordergateSys
import CLibBPF
import Foundation
import Logging

/// Bordergate's programs and maps, loaded into the kernel.
///
/// In ``Mode/pinned(root:)`` (the daemon) maps, tracepoint links and every cgroup's links are pinned
/// under the root, so the guard outlives the process: redirected connects find no proxy and are
/// refused, kernel verdicts still apply, and a restarted daemon re-opens the pins, swaps its fresh
/// programs into the existing links, and resumes. In ``Mode/ephemeral`` (standalone `exec`) nothing
/// is pinned and everything detaches when the process exits.
public final class KernelGuard: @unchecked Sendable {
    public enum Mode: Sendable, Equatable {
        case pinned(root: String)
        case ephemeral
    }

    /// The cgroup programs, in the order they are attached: the connect hooks last, so no connect
    /// is redirected before the hooks that complete a redirect are in place.
    /// The hardening hooks (socket families, binds of the proxy port, source routes) come after.
    static let cgroupPrograms = ["bg_sock_release", "bg_sockops", "bg_getpeername4", "bg_getpeername6",
                                 "bg_sendmsg4", "bg_sendmsg6", "bg_connect4", "bg_connect6", "bg_sock_create",
                                 "bg_socket_post_create", "bg_bind4", "bg_bind6", "bg_setsockopt", "bg_egress"]
    static let tracePrograms = ["bg_exec", "bg_fork", "bg_exit"]
    static let pinnedMaps = ["config", "guarded", "sock_state", "orig_by_tuple", "procs", "stats", "events",
                             "regions4_a", "regions4_b", "regions6_a", "regions6_b", "policy_rows", "udp_seen", "proxy_netns",
                             "refusals", "refusals_seen", "refusal_budget", "event_drops", "proxy_limits", "proxied_live", "skb_drops"]
    /// Maps earlier versions pinned that nothing uses any more (sock_orig became sock_state, socket-local
    /// storage): their pins are removed once the programs are loaded.
    static let retiredMaps = ["sock_orig"]
    /// Needs BPF LSM programs (trampolines and the BPF LSM), which some kernels lack.
    static let lsmProgram = "bg_socket_post_create"

    /// The cgroup programs this kernel runs: all of them, or all but ``lsmProgram``.
    let activeCgroupPrograms: [String]
    /// Whether packet, XDP and vsock sockets are refused in guarded cgroups (a BPF LSM hook).
    public let refusesOtherSocketFamilies: Bool

    public let mode: Mode
    private let logger: Logger
    private let objectBytes: [UInt8] // libbpf reads it until load completes
    private let object: OpaquePointer
    private let lock = NSLock()
    private var heldLinks: [UInt64: [OpaquePointer]] = [:] // ephemeral mode: cgroup id -> links
    private var traceLinks: [OpaquePointer] = []
    private var closed = false

    public let config: BPFMap<UInt32, bg_config>
    let proxyNetns: BPFMap<UInt32, bg_proxy_netns>
    public let guarded: BPFMap<UInt64, bg_cgroup_policy>
    public let originals: BPFMap<bg_tuple_key, bg_orig>
    public let processes: BPFMap<UInt32, bg_proc>
    public let stats: BPFPerCPUCounters
    let eventsFD: Int32
    /// Refusals: their ring, their counts per key and second, and what each cgroup's budget left out.
    let refusalsFD: Int32
    let refusalCounts: BPFMap<bg_refusal_key, bg_refusal_count>
    let refusalBudgets: BPFMap<bg_refusal_budget_key, bg_refusal_budget>
    let eventDrops: BPFPerCPUCounters
    /// Packets dropped at egress for a source route (`bg_egress`).
    let skbDrops: BPFPerCPUCounters
    let proxyLimits: BPFMap<UInt32, bg_proxy_limits>
    let proxiedLive: BPFMap<bg_live_key, UInt64>
    let regions4: [BPFMap<bg_lpm4_key, UInt32>]
    let regions6: [BPFMap<bg_lpm6_key, UInt32>]
    let policyRows: BPFMap<UInt32, bg_policy_row>
    /// `proc_gen`, mapped read-only (nil if the kernel would not map it: nothing is cached then).
    private let processGenerations: UnsafeRawPointer?
    private static let processGenerationsSize = Int(BG_PROC_GEN_BUCKETS) * 8

    /// Loads the embedded object. In pinned mode, existing pins are reused and upgraded in place.
    /// `locate` finds a cgroup's directory by id (nil when it is gone); a restart needs it to tell
    /// a removed cgroup from a link that must be attached again.
    public init(mode: Mode, logger: Logger, locate: (UInt64) -> String? = { _ in nil }) throws {
        self.mode = mode
        self.logger = logger
        LibBPFLog.install(logger)
        LibBPFLog.reset()

        guard let data = Data(base64Encoded: embeddedBordergateBPFObjectBase64) else {
            throw KernelError("the embedded BPF object is corrupt; rebuild bordergate")
        }
        objectBytes = Array(data)
        let obj = objectBytes.withUnsafeBytes { raw in
            bpf_object__open_mem(raw.baseAddress, raw.count, nil)
        }
        guard let obj else {
            throw KernelError.system("opening the embedded BPF object", errno: errno, hint: "rebuild bordergate (libbpf said: \(LibBPFLog.tail(3, separator: "; ")))")
        }
        object = obj
        // Where the kernel cannot load BPF LSM programs, packet, XDP and vsock sockets stay
        // allowed (the inet hooks cannot see them): loading everything else beats refusing to run.
        let lsm = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_LSM, nil) == 1
        refusesOtherSocketFamilies = lsm
        if !lsm, let prog = bpf_object__find_program_by_name(obj, Self.lsmProgram) {
            bpf_program__set_autoload(prog, false)
            logger.info("this kernel cannot load BPF LSM programs: packet, XDP and vsock sockets are not refused in guarded cgroups")
        }
        activeCgroupPrograms = Self.cgroupPrograms.filter { lsm || $0 != Self.lsmProgram }
        Self.applyTestRingSize(obj)

        if case .pinned(let root) = mode {
            try BPFFilesystem.prepare(pinRoot: root)
            for name in Self.pinnedMaps {
                guard let map = bpf_object__find_map_by_name(obj, name) else {
                    throw KernelError("the embedded BPF object has no map '\(name)'; rebuild bordergate")
                }
                // libbpf reuses a compatible pinned map, or pins the new one after load.
                let rc = bpf_map__set_pin_path(map, "\(root)/maps/\(name)")
                if rc != 0 { throw KernelError.system("setting the pin path of map \(name)", errno: -rc) }
            }
        }

        let loaded = objectBytes.withUnsafeBytes { _ in bpf_object__load(obj) }
        if loaded != 0 {
            let detail = LibBPFLog.tail(6, separator: "; ")
            bpf_object__close(obj)
            if case .pinned(let root) = mode, detail.contains("reuse") || detail.contains("mismatch") {
                throw KernelError("the maps pinned under \(root)/maps come from an incompatible version of Bordergate; "
                    + "detach every guard of this pin root to remove the old one, then start again (libbpf said: \(detail))")
            }
            throw KernelError.system("loading Bordergate's BPF programs into the kernel", errno: -loaded,
                                     hint: "needs root, a kernel with BTF (/sys/kernel/btf/vmlinux) and cgroup BPF support (libbpf said: \(detail))")
        }

        if case .pinned(let root) = mode {
            for name in Self.retiredMaps { unlink("\(root)/maps/\(name)") }
        }

        func mapFD(_ name: String) -> Int32 {
            bpf_map__fd(bpf_object__find_map_by_name(obj, name))
        }
        config = BPFMap(fd: mapFD("config"), name: "config")
        proxyNetns = BPFMap(fd: mapFD("proxy_netns"), name: "proxy_netns")
        guarded = BPFMap(fd: mapFD("guarded"), name: "guarded")
        originals = BPFMap(fd: mapFD("orig_by_tuple"), name: "orig_by_tuple")
        processes = BPFMap(fd: mapFD("procs"), name: "procs")
        stats = BPFPerCPUCounters(fd: mapFD("stats"))
        eventsFD = mapFD("events")
        refusalsFD = mapFD("refusals")
        refusalCounts = BPFMap(fd: mapFD("refusals_seen"), name: "refusals_seen")
        refusalBudgets = BPFMap(fd: mapFD("refusal_budget"), name: "refusal_budget")
        eventDrops = BPFPerCPUCounters(fd: mapFD("event_drops"))
        skbDrops = BPFPerCPUCounters(fd: mapFD("skb_drops"))
        proxyLimits = BPFMap(fd: mapFD("proxy_limits"), name: "proxy_limits")
        proxiedLive = BPFMap(fd: mapFD("proxied_live"), name: "proxied_live")
        regions4 = [BPFMap(fd: mapFD("regions4_a"), name: "regions4_a"), BPFMap(fd: mapFD("regions4_b"), name: "regions4_b")]
        regions6 = [BPFMap(fd: mapFD("regions6_a"), name: "regions6_a"), BPFMap(fd: mapFD("regions6_b"), name: "regions6_b")]
        policyRows = BPFMap(fd: mapFD("policy_rows"), name: "policy_rows")
        let mapped = mmap(nil, Self.processGenerationsSize, PROT_READ, MAP_SHARED, mapFD("proc_gen"), 0)
        processGenerations = mapped == MAP_FAILED ? nil : UnsafeRawPointer(mapped)

        do {
            try attachTracepoints()
            if case .pinned(let root) = mode {
                try resumePinnedCgroups(root: root, locate: locate)
            }
        } catch {
            close()
            throw error
        }
    }

    deinit {
        close()
        // only here: a relay thread may still ask for a generation until the proxy has stopped
        if let p = processGenerations { munmap(UnsafeMutableRawPointer(mutating: p), Self.processGenerationsSize) }
    }

    /// Releases this process's handles. Pinned links and maps stay in the kernel; in ephemeral
    /// mode this detaches everything.
    public func close() {
        lock.withLock {
            guard !closed else { return }
            closed = true
            for links in heldLinks.values { links.reversed().forEach { bpf_link__destroy($0) } }
            heldLinks.removeAll()
            traceLinks.forEach { bpf_link__destroy($0) }
            traceLinks.removeAll()
            bpf_object__close(object)
        }
    }

    private func program(_ name: String) throws -> OpaquePointer {
        guard let prog = bpf_object__find_program_by_name(object, name) else {
            throw KernelError("the embedded BPF object has no program '\(name)'; rebuild bordergate")
        }
        return prog
    }

    // MARK: Tracepoints (the process table)

    private func attachTracepoints() throws {
        for name in Self.tracePrograms {
            let prog = try program(name)
            guard let link = bpf_program__attach(prog) else {
                throw KernelError.system("attaching \(name) (tp_btf)", errno: errno,
                                         hint: "the kernel needs BTF at /sys/kernel/btf/vmlinux")
            }
            if case .pinned(let root) = mode {
                // Tracing links cannot swap programs in place: pin the new link beside the old one
                // and rename it over, so the process table never goes unwatched.
                let path = "\(root)/links/\(name)"
                let fresh = path + "_new" // bpffs refuses dots in names
                unlink(fresh)
                let rc = bpf_link__pin(link, fresh)
                if rc != 0 {
                    bpf_link__destroy(link)
                    throw KernelError.system("pinning \(fresh)", errno: -rc)
                }
                if rename(fresh, path) != 0 {
                    let err = errno
                    bpf_link__destroy(link)
                    throw KernelError.system("replacing \(path)", errno: err)
                }
                bpf_link__destroy(link) // the pin holds it now
            } else {
                lock.withLock { traceLinks.append(link) }
            }
        }
    }

    // MARK: Cgroups

    private func linkDirectory(root: String, cgroupID: UInt64) -> String {
        "\(root)/cgroups/\(cgroupID)"
    }

    /// Guards a cgroup and all its descendants with the policy compiled into `policySlot` against
    /// the region tries of `tableSlot`.
    public func attach(cgroupDirectory: String, cgroupID: UInt64, policySlot: UInt32, tableSlot: UInt32,
                       baseSlot: UInt32? = nil, grantEnds: UInt64? = nil) throws {
        // The policy entry first: a hook that finds none refuses the connect (fail closed). If the
        // links cannot be made, the entry goes back to what it was.
        let previous = guarded.lookup(cgroupID)
        try setCgroupPolicy(cgroupID: cgroupID, policySlot: policySlot, tableSlot: tableSlot,
                            baseSlot: baseSlot, grantEnds: grantEnds)
        do {
            try attachLinks(cgroupDirectory: cgroupDirectory, cgroupID: cgroupID)
        } catch {
            if let previous { try? guarded.update(cgroupID, previous) } else { guarded.delete(cgroupID) }
            throw error
        }
    }

    private func attachLinks(cgroupDirectory: String, cgroupID: UInt64) throws {

        let fd = open(cgroupDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KernelError.system("opening cgroup \(cgroupDirectory)", errno: errno)
        }
        defer { Foundation.close(fd) }

        if case .pinned(let root) = mode {
            let dir = linkDirectory(root: root, cgroupID: cgroupID)
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw KernelError.system("creating \(dir)", errno: errno)
            }
            for name in activeCgroupPrograms {
                let path = "\(dir)/\(name)"
                if let existing = bpf_link__open(path) {
                    // Already guarded: make sure it runs this build's program.
                    let rc = bpf_link__update_program(existing, try program(name))
                    bpf_link__destroy(existing)
                    if rc == 0 { continue }
                }
                try attachAndPin(name, cgroupFD: fd, cgroupDirectory: cgroupDirectory, path: path)
            }
        } else {
            var links: [OpaquePointer] = []
            for name in activeCgroupPrograms {
                guard let link = bpf_program__attach_cgroup(try program(name), fd) else {
                    let err = errno
                    links.reversed().forEach { bpf_link__destroy($0) }
                    throw KernelError.system("attaching \(name) to \(cgroupDirectory)", errno: err)
                }
                links.append(link)
            }
            lock.withLock { heldLinks[cgroupID] = links }
        }
    }

    /// Attaches a fresh link and pins it over `path`: the new link is in place before an old one
    /// at that path lets go, so the cgroup is never without the hook.
    private func attachAndPin(_ name: String, cgroupFD: Int32, cgroupDirectory: String, path: String) throws {
        guard let link = bpf_program__attach_cgroup(try program(name), cgroupFD) else {
            throw KernelError.system("attaching \(name) to \(cgroupDirectory)", errno: errno)
        }
        let fresh = path + "_new"
        unlink(fresh)
        let rc = bpf_link__pin(link, fresh)
        bpf_link__destroy(link)
        if rc != 0 { throw KernelError.system("pinning \(fresh)", errno: -rc) }
        if rename(fresh, path) != 0 {
            let err = errno
            unlink(fresh)
            throw KernelError.system("replacing \(path)", errno: err)
        }
    }

    /// Removes the guard from a cgroup. Returns false if it was not guarded.
    @discardableResult
    public func detach(cgroupID: UInt64) -> Bool {
        var found = false
        switch mode {
        case .pinned(let root):
            found = Self.unpinCgroup(root: root, cgroupID: cgroupID)
        case .ephemeral:
            let links = lock.withLock { heldLinks.removeValue(forKey: cgroupID) }
            if let links {
                found = true
                links.reversed().forEach { bpf_link__destroy($0) }
            }
        }
        if guarded.delete(cgroupID) { found = true }
        forgetProxiedConnections(cgroupID: cgroupID)
        return found
    }

    /// The cgroup ids with a guard.
    public func guardedCgroups() -> [UInt64: bg_cgroup_policy] {
        var out: [UInt64: bg_cgroup_policy] = [:]
        for id in guarded.keys() {
            if let p = guarded.lookup(id) { out[id] = p }
        }
        return out
    }

    /// After a restart: swap this build's programs into every pinned cgroup link. Only a cgroup
    /// that is gone loses its guard; a link that cannot be swapped or is missing is attached
    /// afresh, and if even that fails the daemon does not start (the old links keep guarding).
    private func resumePinnedCgroups(root: String, locate: (UInt64) -> String?) throws {
        let base = "\(root)/cgroups"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        for entry in entries {
            guard let id = UInt64(entry) else { continue }
            guard let dir = locate(id) else {
                logger.info("cgroup \(id) is gone; dropping its guard")
                Self.unpinCgroup(root: root, cgroupID: id)
                guarded.delete(id)
                continue
            }
            var stale: [String] = []
            for name in activeCgroupPrograms {
                let path = "\(base)/\(entry)/\(name)"
                guard let link = bpf_link__open(path) else {
                    stale.append(name)
                    continue
                }
                let rc = bpf_link__update_program(link, try program(name))
                bpf_link__destroy(link)
                if rc != 0 { stale.append(name) }
            }
            if !stale.isEmpty {
                let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                guard fd >= 0 else {
                    throw KernelError.system("re-attaching \(stale.joined(separator: ", ")) to \(dir)", errno: errno)
                }
                defer { Foundation.close(fd) }
                for name in stale {
                    try attachAndPin(name, cgroupFD: fd, cgroupDirectory: dir, path: "\(base)/\(entry)/\(name)")
                }
                logger.warning("re-attached \(stale.joined(separator: ", ")) to \(dir)")
            }
            logger.info("resumed guard of \(dir)")
        }
    }

    // MARK: Configuration

    /// The SO_MARK the proxy puts on its upstream sockets (the loop guard checks it with the pid).
    public static let proxyMark = UInt32(BG_DEFAULT_PROXY_MARK)

    /// Points redirected connects at the proxy and exempts the proxy's own upstream sockets:
    /// those of process `tgid` that carry ``proxyMark``. Only sockets in this process's network
    /// namespace are redirected. Port 0 (no proxy) refuses redirects but keeps the last port
    /// reserved: no guarded process may bind it while no daemon listens.
    public func setProxy(tgid: Int32, port: UInt16) throws {
        if port != 0 {
            var netns = bg_proxy_netns()
            netns.cookie = try Self.networkNamespaceCookie()
            try proxyNetns.update(0, netns)
        }
        var cfg = config.lookup(0) ?? bg_config()
        cfg.proxy_tgid = UInt32(bitPattern: tgid)
        cfg.proxy_mark = Self.proxyMark
        cfg.proxy_port = port
        if port != 0 { cfg.reserved_port = port }
        // A stopping daemon leaves the audit block in place (fail closed); a starting one clears
        // it and sets it again if its own log cannot be written.
        cfg.flags = port == 0 ? cfg.flags & BG_CONFIG_FLAG_AUDIT_BLOCKED : BG_CONFIG_FLAG_READY
        try config.update(0, cfg)
    }

    /// While set, the kernel refuses every guarded connection it would record (reason
    /// BG_REASON_AUDIT_BLOCKED): the daemon sets it when its audit log cannot be written.
    public func setAuditBlocked(_ blocked: Bool) throws {
        var cfg = config.lookup(0) ?? bg_config()
        if blocked { cfg.flags |= BG_CONFIG_FLAG_AUDIT_BLOCKED } else { cfg.flags &= ~BG_CONFIG_FLAG_AUDIT_BLOCKED }
        try config.update(0, cfg)
    }

    /// The cookie of this process's network namespace, as `bpf_get_netns_cookie` gives it for a
    /// socket (SO_NETNS_COOKIE, Linux 5.14).
    static func networkNamespaceCookie() throws -> UInt64 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw KernelError.system("opening a socket to read the network namespace's cookie", errno: errno) }
        defer { Foundation.close(fd) }
        var cookie: UInt64 = 0
        var len = socklen_t(MemoryLayout<UInt64>.size)
        guard getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len) == 0, cookie != 0 else {
            throw KernelError.system("reading the network namespace's cookie (SO_NETNS_COOKIE)", errno: errno,
                                     hint: "Bordergate needs Linux 5.14 or later")
        }
        return cookie
    }

    /// The section of every program this guard runs (`cgroup/connect4`, `tp_btf/sched_process_exec`).
    public var programSections: [String] {
        (activeCgroupPrograms + Self.tracePrograms).compactMap { name in
            bpf_object__find_program_by_name(object, name).flatMap { bpf_program__section_name($0) }.map { String(cString: $0) }
        }
    }

    // MARK: Lookups

    /// The original destination and identity of a redirected connection, by the client's address
    /// and port as the proxy sees them. The entry is removed: each connection is claimed once.
    public func claimOriginal(clientAddress: KernelAddress, clientPort: UInt16) -> OriginalConnection? {
        let key = tupleKey(address: clientAddress, port: clientPort)
        guard let o = originals.take(key) else { return nil }
        return OriginalConnection(o)
    }

    /// Takes every record the proxy never claimed: connections that reached the proxy's listener
    /// but were never accepted (reset in its backlog when it stopped, or left by a daemon that
    /// died). Call it only while no proxy is accepting.
    public func takeUnclaimedOriginals() -> [KernelConnectEvent] {
        originals.keys().compactMap { originals.take($0) }.map { KernelConnectEvent(unclaimed: $0) }
    }

    /// A number that changes whenever process `tgid` may have become another program (an exec, or
    /// a new process that got its id): what was learnt of it at one generation still holds while
    /// the generation is the same. Nil when it cannot be known; then nothing should be cached.
    /// Costs no system call.
    public func processGeneration(tgid: UInt32) -> UInt64? {
        guard let base = processGenerations else { return nil }
        let slot = base.advanced(by: Int(tgid & (UInt32(BG_PROC_GEN_BUCKETS) - 1)) * 8).assumingMemoryBound(to: UInt64.self)
        return bg_load_acquire_u64(slot)
    }

    public func process(tgid: UInt32) -> ProcessRecord? {
        processes.lookup(tgid).map(ProcessRecord.init)
    }

    /// The `events` and `refusals` ring buffers as one async stream; see ``KernelEventReader``.
    public func makeEventReader() throws -> KernelEventReader {
        try KernelEventReader(mapFDs: [eventsFD, refusalsFD], logger: logger)
    }
}
