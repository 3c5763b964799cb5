import BordergateAudit
import BordergateKernel
import Foundation
import CBordergateSys

/// Turns the kernel's view of a caller into the `process` of an event: executable and parent
/// from the kernel's process table (which outlives the process), else from /proc while it lives;
/// user names from the password database; cgroup paths from their ids.
final class ProcessDescriber: @unchecked Sendable {
    private let kernel: KernelGuard
    private let cgroups: CgroupV2
    private let lock = NSLock()
    private var users: [UInt32: String] = [:]
    private var cgroupNames: [UInt64: String] = [:]
    /// Descriptions taken from the kernel's process table, by who connected, with the generation
    /// of the process id they were taken at (see ``KernelGuard/processGeneration(tgid:)``) and the
    /// time since which the table's record names the process: the connections of one process
    /// after the first cost no system call and build no strings.
    private var described: [DescribedKey: Described] = [:]
    static let describedLimit = 4096

    private struct Described {
        let generation: UInt64
        let since: UInt64
        let process: AuditEvent.Process
    }

    private struct DescribedKey: Hashable {
        let tgid: UInt32
        let uid: UInt32
        let cgroupID: UInt64
        let comm: String // per thread, and free to change without an exec
    }

    init(kernel: KernelGuard, cgroups: CgroupV2) {
        self.kernel = kernel
        self.cgroups = cgroups
    }

    /// Remembers a cgroup's name so events need not look for it.
    func learn(cgroupID: UInt64, name: String) {
        lock.withLock {
            cgroupNames[cgroupID] = name
            described.removeAll() // they may carry the name this replaces
        }
    }

    func cgroupName(_ id: UInt64) -> String {
        if let n = lock.withLock({ cgroupNames[id] }) { return n }
        let name = cgroups.directory(ofID: id).map { cgroups.relativeName(ofDirectory: $0) } ?? "cgroup-id:\(id)"
        lock.withLock { cgroupNames[id] = name }
        return name
    }

    func userName(_ uid: UInt32) -> String? {
        if let n = lock.withLock({ users[uid] }) { return n }
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &pwd, &buf, buf.count, &result) == 0, result != nil, let name = pwd.pw_name else {
            return nil
        }
        let s = String(cString: name)
        lock.withLock { users[uid] = s }
        return s
    }

    /// `kernelPPID` and `kernelExe` are what the kernel copied into an event at connect, if it did.
    ///
    /// The process is described as it was when it connected: a process that exec'd another program
    /// since (or a process id taken over since) is not named by what the table says now. It gets
    /// no executable and no parent, so rules on the executable cannot decide its connection (the
    /// proxy refuses it) rather than deciding by a program that did not make it.
    func describe(_ id: ConnectIdentity, ppid kernelPPID: UInt32 = 0, exe kernelExe: String = "") -> AuditEvent.Process {
        // The generation is read before the table: an exec that lands in between makes the entry
        // stale at once, never a stale entry current.
        guard kernelPPID == 0, kernelExe.isEmpty, let generation = kernel.processGeneration(tgid: id.tgid) else {
            return describeAfresh(id, ppid: kernelPPID, exe: kernelExe).process
        }
        let key = DescribedKey(tgid: id.tgid, uid: id.uid, cgroupID: id.cgroupID, comm: id.comm)
        if let hit = lock.withLock({ described[key] }), hit.generation == generation {
            return hit.since <= id.monotonicNanos ? hit.process : process(id, ppid: 0, exe: "")
        }
        let (fresh, since) = describeAfresh(id, ppid: 0, exe: "")
        // Only what the kernel's table said: /proc may change without an exec (a new parent).
        if let since {
            lock.withLock {
                if described.count >= Self.describedLimit { described.removeAll(keepingCapacity: true) }
                described[key] = Described(generation: generation, since: since, process: fresh)
            }
        }
        return fresh
    }

    /// `since` is set when the description came wholly from the kernel's process table: when its
    /// record began to name the process (and the description is of whoever holds the id from then).
    private func describeAfresh(_ id: ConnectIdentity, ppid kernelPPID: UInt32, exe kernelExe: String)
        -> (process: AuditEvent.Process, since: UInt64?) {
        var since: UInt64?
        var ppid = kernelPPID
        var exe = kernelExe
        if exe.isEmpty || ppid == 0, let rec = kernel.process(tgid: id.tgid) {
            // a record begun after the connect (and /proc) name a later program: no fallback
            guard rec.names(connectAt: id.monotonicNanos) else { return (process(id, ppid: ppid, exe: exe), nil) }
            if exe.isEmpty {
                exe = rec.exe
                // The path was read in the process's own mount namespace: it names the program
                // only if the file there is the file that was executed.
                if exe.hasPrefix("/"), !Self.isExecuted(path: exe, device: rec.exeDevice, inode: rec.exeInode) {
                    return (process(id, ppid: ppid == 0 ? rec.ppid : ppid, exe: ""), nil)
                }
            }
            if ppid == 0 { ppid = rec.ppid }
            if exe.hasPrefix("/") && ppid != 0 { since = rec.since }
        }
        // /proc only when the kernel's table falls short (a process older than the guard, or an
        // exec by relative path): this runs for every proxied connection.
        if !exe.hasPrefix("/"), let live = Self.liveExe(pid: id.tgid) {
            exe = Self.isLiveExecutable(pid: id.tgid, path: live) ? live : ""
        }
        if ppid == 0, let p = Self.liveParent(pid: id.tgid) { ppid = p }
        return (process(id, ppid: ppid, exe: exe), since)
    }

    private func process(_ id: ConnectIdentity, ppid: UInt32, exe: String) -> AuditEvent.Process {
        AuditEvent.Process(pid: Int(id.tgid), ppid: ppid == 0 ? nil : Int(ppid), uid: Int(id.uid), user: userName(id.uid),
                           comm: id.comm, exe: exe.isEmpty ? nil : exe, cgroup: cgroupName(id.cgroupID))
    }

    /// Whether the file at `path`, in this process's mount namespace (the host's), is the file the
    /// kernel executed (its device, in the kernel's encoding, and inode). For a script the kernel
    /// executed its interpreter: the interpreter its `#!` line names must be that file. A tool in
    /// a mount namespace of its own that bind-mounted one program over another's path fails this,
    /// and gets no executable: `exe:` rules cannot match it.
    static func isExecuted(path: String, device: UInt32, inode: UInt64) -> Bool {
        guard inode != 0 else { return false }
        func same(_ p: String) -> Bool {
            var id = bg_file_identity()
            guard bg_file_identity(p, &id) == 0 else { return false }
            let dev = id.device
            let major = UInt32((dev >> 8) & 0xfff) | UInt32((dev >> 32) & 0xffff_f000)
            let minor = UInt32(dev & 0xff) | UInt32((dev >> 12) & 0xffff_ff00)
            return id.inode == inode && (major << 20 | minor) == device
        }
        if same(path) { return true }
        guard let interpreter = shebangInterpreter(path) else { return false }
        return same(interpreter)
    }

    /// The interpreter a script's first line names (`#!/bin/sh -e` → /bin/sh).
    static func shebangInterpreter(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 256), head.starts(with: [0x23, 0x21]) else { return nil }
        let line = head.dropFirst(2).prefix { $0 != 0x0a }
        let words = String(decoding: line, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard let first = words.first, first.hasPrefix("/") else { return nil }
        return String(first)
    }

    /// For a process the kernel's table does not know: whether /proc's path for it is its file.
    static func isLiveExecutable(pid: UInt32, path: String) -> Bool {
        var exe = bg_file_identity(), named = bg_file_identity()
        guard bg_file_identity("/proc/\(pid)/exe", &exe) == 0, bg_file_identity(path, &named) == 0 else { return false }
        return exe.device == named.device && exe.inode == named.inode
    }

    static func liveExe(pid: UInt32) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func liveParent(pid: UInt32) -> UInt32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? UInt32(fields[1]) : nil
    }
}

/// Converts the kernel's CLOCK_MONOTONIC nanoseconds to wall-clock time.
func wallClock(monotonicNanos: UInt64) -> Date {
    let now = bg_monotonic_ns()
    let ago = now > monotonicNanos ? Double(now - monotonicNanos) / 1e9 : 0
    return Date().addingTimeInterval(-ago)
}

/// A connection id unique across boots: the boot id's first block and the socket cookie.
func connectionID(cookie: UInt64) -> String {
    Hex.string(bootTagDash, cookie)
}

private let bootTagDash = Array((bootTag + "-").utf8)

private let bootTag: String = {
    let id = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "00000000"
    return String(id.prefix(8))
}()
