import Foundation

/// Checks that the host can run Bordergate's kernel side, each failure one line with what to do.
public enum Preflight {
    public static func requireRoot(for action: String) throws {
        guard geteuid() == 0 else {
            throw KernelError("\(action) needs root (loading BPF programs and managing cgroups); run it with sudo")
        }
    }

    public static func requireBTF(path: String = "/sys/kernel/btf/vmlinux") throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw KernelError("this kernel has no BTF (\(path) is missing); Bordergate needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later)")
        }
    }

    /// All checks needed to load and attach; returns the cgroup v2 hierarchy.
    public static func check(for action: String) throws -> CgroupV2 {
        try requireRoot(for: action)
        try requireBTF()
        return try CgroupV2.discover()
    }
}
