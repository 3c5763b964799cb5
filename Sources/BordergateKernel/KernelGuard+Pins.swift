import CBordergateABI
import CBordergateSys
import CLibBPF
import Foundation
import Logging

/// The pins of guards, without a loaded guard: what the CLI and a stopping daemon remove.
extension KernelGuard {
    @discardableResult
    static func unpinCgroup(root: String, cgroupID: UInt64) -> Bool {
        let dir = "\(root)/cgroups/\(cgroupID)"
        guard FileManager.default.fileExists(atPath: dir) else { return false }
        for name in cgroupPrograms.reversed() { unlink("\(dir)/\(name)") }
        rmdir(dir)
        return true
    }

    /// Removes one cgroup's guard from the pins without loading anything (no daemon running).
    public static func detachPinned(root: String, cgroupID: UInt64) -> Bool {
        var found = unpinCgroup(root: root, cgroupID: cgroupID)
        let fd = bpf_obj_get("\(root)/maps/guarded")
        if fd >= 0 {
            var key = cgroupID
            if bpf_map_delete_elem(fd, &key) == 0 { found = true }
            Foundation.close(fd)
        }
        return found
    }

    /// Removes every pin: all cgroup guards, the process table, the maps. Returns what was removed.
    @discardableResult
    public static func detachAllPinned(root: String) -> [UInt64] {
        var removed: [UInt64] = []
        let base = "\(root)/cgroups"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] {
            if let id = UInt64(entry) { removed.append(id) }
            unpinCgroup(root: root, cgroupID: UInt64(entry) ?? 0)
            // anything unexpected inside
            for f in (try? FileManager.default.contentsOfDirectory(atPath: "\(base)/\(entry)")) ?? [] {
                unlink("\(base)/\(entry)/\(f)")
            }
            rmdir("\(base)/\(entry)")
        }
        for sub in ["links", "maps"] {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(sub)")) ?? [] {
                unlink("\(root)/\(sub)/\(f)")
            }
        }
        for sub in ["cgroups", "links", "maps", ""] { rmdir("\(root)/\(sub)") }
        return removed
    }

    /// The cgroup ids pinned under a root, read without loading anything.
    public static func pinnedCgroups(root: String) -> [UInt64] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(root)/cgroups")) ?? []).compactMap(UInt64.init)
    }
}
