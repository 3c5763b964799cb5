import BordergateKernel

/// The guards left pinned in bpffs, for commands that run without a daemon (`detach`, `status`).
/// The CLI reaches the kernel only through here, so it needs no kernel types.
public enum PinnedGuards {
    /// The cgroup ids guarded from the pins under `root`, read without loading anything.
    public static func guardedCgroups(root: String) -> [UInt64] {
        KernelGuard.pinnedCgroups(root: root)
    }

    /// Removes every guard and all pinned state under `root`; returns the cgroup ids that were guarded.
    public static func detachAll(root: String, action: String) throws -> [UInt64] {
        try Preflight.requireRoot(for: action)
        return KernelGuard.detachAllPinned(root: root)
    }

    /// Removes the pinned guard of one cgroup (relative to the cgroup v2 root, or absolute) and
    /// returns its hierarchy-relative name.
    public static func detach(root: String, cgroup: String, action: String) throws -> String {
        try Preflight.requireRoot(for: action)
        let cgroups = try CgroupV2.discover()
        let dir = cgroups.directory(for: cgroup)
        let id = try cgroups.id(ofDirectory: dir)
        guard KernelGuard.detachPinned(root: root, cgroupID: id) else {
            throw ServiceError("\(cgroup) is not guarded")
        }
        return cgroups.relativeName(ofDirectory: dir)
    }
}
