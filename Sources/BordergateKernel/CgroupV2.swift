import Foundation

/// The cgroup v2 hierarchy of this host: where it is mounted, and the cgroups in it.
///
/// It is not always at `/sys/fs/cgroup`: hosts that keep v1 controllers mount it at
/// `/sys/fs/cgroup/unified`, so the mount is read from `/proc/self/mountinfo`.
public struct CgroupV2: Sendable {
    /// Absolute path of the cgroup2 mount.
    public let mountPoint: String

    public init(mountPoint: String) {
        self.mountPoint = mountPoint
    }

    /// Finds the cgroup2 mount of this process's mount namespace.
    public static func discover(mountinfo: String = "/proc/self/mountinfo") throws -> CgroupV2 {
        guard let text = try? String(contentsOfFile: mountinfo, encoding: .utf8) else {
            throw KernelError("cannot read \(mountinfo): is /proc mounted?")
        }
        guard let mount = Self.cgroup2Mount(inMountinfo: text) else {
            throw KernelError(
                "no cgroup v2 hierarchy is mounted (nothing of type cgroup2 in \(mountinfo)); "
                    + "mount one with 'mount -t cgroup2 none /sys/fs/cgroup/unified' or boot with systemd.unified_cgroup_hierarchy=1")
        }
        return CgroupV2(mountPoint: mount)
    }

    /// The mount point of the first `cgroup2` filesystem in a mountinfo text.
    static func cgroup2Mount(inMountinfo text: String) -> String? {
        for line in text.split(separator: "\n") {
            // fields: id parent major:minor root mountpoint options [optional...] - fstype source super
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let fstype = halves[1].split(separator: " ").first
            guard fstype == "cgroup2" else { continue }
            let fields = halves[0].split(separator: " ")
            guard fields.count >= 5 else { continue }
            return unescapeMountPath(String(fields[4]))
        }
        return nil
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescapeMountPath(_ s: String) -> String {
        var out = ""
        let chars = Array(s)
        var i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 3 < chars.count,
               let code = UInt8(String(chars[(i + 1)...(i + 3)]), radix: 8) {
                out.append(Character(UnicodeScalar(code)))
                i += 4
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        return out
    }

    /// The absolute directory of a cgroup named by an operator: either a path inside the mount
    /// (`/sys/fs/cgroup/unified/ci/job-17`) or one relative to the hierarchy's root (`/ci/job-17`).
    public func directory(for name: String) -> String {
        if name.hasPrefix(mountPoint + "/") || name == mountPoint {
            return name
        }
        let trimmed = name.hasPrefix("/") ? String(name.dropFirst()) : name
        return trimmed.isEmpty ? mountPoint : mountPoint + "/" + trimmed
    }

    /// The hierarchy-relative name of a cgroup directory (`/ci/job-17`), as events show it.
    public func relativeName(ofDirectory dir: String) -> String {
        if dir == mountPoint { return "/" }
        if dir.hasPrefix(mountPoint + "/") { return String(dir.dropFirst(mountPoint.count)) }
        return dir
    }

    /// The id the kernel reports for a cgroup (`bpf_get_current_cgroup_id`): its directory's inode.
    public func id(ofDirectory dir: String) throws -> UInt64 {
        var st = stat()
        guard stat(dir, &st) == 0 else {
            throw KernelError.system("cgroup \(relativeName(ofDirectory: dir)) (\(dir))", errno: errno,
                                     hint: "name an existing cgroup, relative to \(mountPoint) or absolute")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR,
              FileManager.default.fileExists(atPath: dir + "/cgroup.procs") else {
            throw KernelError("\(dir) is not a cgroup v2 directory (the hierarchy is at \(mountPoint))")
        }
        return UInt64(st.st_ino)
    }

    /// Finds the directory of a cgroup by id, by walking the hierarchy. Cheap: hierarchies have
    /// hundreds of cgroups, not millions, and only `status` asks.
    public func directory(ofID id: UInt64) -> String? {
        var queue = [mountPoint]
        while let dir = queue.popLast() {
            var st = stat()
            if stat(dir, &st) == 0, UInt64(st.st_ino) == id { return dir }
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { continue }
            for e in entries {
                let child = dir + "/" + e
                var cst = stat()
                if lstat(child, &cst) == 0, (cst.st_mode & S_IFMT) == S_IFDIR { queue.append(child) }
            }
        }
        return nil
    }

    /// The cgroup of a process, from `/proc/PID/cgroup` (the `0::` line).
    public static func cgroupName(ofProcess pid: Int32) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// Creates a cgroup directory (and its parents).
    public func create(_ dir: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw KernelError("cannot create cgroup \(dir): \(error.localizedDescription); Bordergate must run as root")
        }
    }

    /// The processes in a cgroup (itself only, not its descendants).
    public func processes(in dir: String) -> [Int32] {
        ((try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8)) ?? "")
            .split(separator: "\n").compactMap { Int32($0) }
    }

    /// Kills every process in a cgroup and its descendants and waits until it is empty. Returns
    /// how many processes it found. Uses cgroup.kill (Linux 5.14+), else SIGKILL one by one.
    @discardableResult
    public func killAll(_ dir: String, timeout: Duration = .seconds(5)) -> Int {
        func populated() -> Bool {
            let events = (try? String(contentsOfFile: dir + "/cgroup.events", encoding: .utf8)) ?? ""
            return events.contains("populated 1")
        }
        guard populated() else { return 0 }
        var found = Set(processes(in: dir))
        let killFile = dir + "/cgroup.kill"
        let useKillFile = FileManager.default.fileExists(atPath: killFile)
        let deadline = ContinuousClock.now + timeout
        while populated() && ContinuousClock.now < deadline {
            if useKillFile {
                try? "1".write(toFile: killFile, atomically: false, encoding: .utf8)
            } else {
                for pid in processes(in: dir) { found.insert(pid); kill(pid, SIGKILL) }
            }
            usleep(10_000)
        }
        return max(found.count, 1)
    }

    /// Removes an empty cgroup, waiting briefly for exited processes to leave it.
    public func remove(_ dir: String) {
        for _ in 0..<50 {
            if rmdir(dir) == 0 || errno == ENOENT { return }
            if errno != EBUSY { return }
            usleep(20_000)
        }
    }
}
