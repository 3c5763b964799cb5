import CBordergateSys
import Foundation

/// The BPF filesystem where Bordergate pins what must outlive its daemon.
public enum BPFFilesystem {
    public static let defaultMount = "/sys/fs/bpf"

    /// Makes sure a bpffs is mounted at (or above) `pinRoot`, mounting one at `/sys/fs/bpf` if the
    /// host has none, and creates `pinRoot`.
    public static func prepare(pinRoot: String) throws {
        if !isBPFFS(pinRoot) && !isBPFFS(parent(of: pinRoot)) {
            let mountPoint = defaultMount
            guard pinRoot.hasPrefix(mountPoint + "/") else {
                throw KernelError("\(parent(of: pinRoot)) is not on a BPF filesystem; choose a pin root under \(mountPoint) or mount bpffs there ('mount -t bpf bpf DIR')")
            }
            if !isBPFFS(mountPoint) {
                try? FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
                guard mount("bpf", mountPoint, "bpf", 0, nil) == 0 else {
                    throw KernelError.system("mounting bpffs at \(mountPoint)", errno: errno,
                                             hint: "run as root, or mount it yourself: mount -t bpf bpf \(mountPoint)")
                }
            }
        }
        for sub in ["", "/maps", "/links", "/cgroups"] {
            let dir = pinRoot + sub
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw KernelError.system("creating \(dir)", errno: errno, hint: "run as root")
            }
        }
    }

    static func parent(of path: String) -> String {
        (path as NSString).deletingLastPathComponent
    }

    /// True when `path` exists on a BPF filesystem.
    public static func isBPFFS(_ path: String) -> Bool {
        var fs = statfs()
        guard statfs(path, &fs) == 0 else { return false }
        return UInt32(truncatingIfNeeded: fs.f_type) == 0xCAFE_4A11 // BPF_FS_MAGIC
    }
}
