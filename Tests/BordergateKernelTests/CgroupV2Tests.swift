import Foundation
import Testing
@testable import BordergateKernel

@Suite struct CgroupV2Tests {
    static let hybrid = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """

    @Test func findsTheUnifiedMountOnHybridHosts() {
        #expect(CgroupV2.cgroup2Mount(inMountinfo: Self.hybrid) == "/sys/fs/cgroup/unified")
    }

    @Test func findsPureV2WithOptionalFields() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
        #expect(CgroupV2.cgroup2Mount(inMountinfo: text) == "/sys/fs/cgroup")
    }

    @Test func unescapesMountPaths() {
        let text = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n"
        #expect(CgroupV2.cgroup2Mount(inMountinfo: text) == "/mnt/my cgroups")
    }

    @Test func noCgroup2IsOneClearError() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mountinfo-\(UUID())").path
        try "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try CgroupV2.discover(mountinfo: path)
        } throws: { error in
            let s = "\(error)"
            return s.contains("no cgroup v2") && s.contains("mount -t cgroup2") && !s.contains("\n")
        }
    }

    @Test func namesAreRelativeOrAbsolute() {
        let cg = CgroupV2(mountPoint: "/sys/fs/cgroup/unified")
        #expect(cg.directory(for: "/ci/job-17") == "/sys/fs/cgroup/unified/ci/job-17")
        #expect(cg.directory(for: "ci/job-17") == "/sys/fs/cgroup/unified/ci/job-17")
        #expect(cg.directory(for: "/sys/fs/cgroup/unified/ci") == "/sys/fs/cgroup/unified/ci")
        #expect(cg.directory(for: "/") == "/sys/fs/cgroup/unified")
        #expect(cg.relativeName(ofDirectory: "/sys/fs/cgroup/unified/ci/job-17") == "/ci/job-17")
        #expect(cg.relativeName(ofDirectory: "/sys/fs/cgroup/unified") == "/")
    }

    @Test func aMissingCgroupNamesItselfAndWhatToDo() {
        let cg = CgroupV2(mountPoint: "/sys/fs/cgroup/unified")
        #expect {
            _ = try cg.id(ofDirectory: "/sys/fs/cgroup/unified/does/not/exist")
        } throws: { error in
            "\(error)".contains("/does/not/exist") && "\(error)".contains("name an existing cgroup")
        }
    }

    @Test func missingBTFIsOneClearError() {
        #expect {
            try Preflight.requireBTF(path: "/nonexistent/vmlinux")
        } throws: { error in
            "\(error)".contains("CONFIG_DEBUG_INFO_BTF")
        }
    }
}

@Suite struct ChildProcessTests {
    @Test func resolvesThroughPath() {
        #expect(ChildProcess.resolve("sh", path: "/nonexistent:/bin:/usr/bin") != nil)
        #expect(ChildProcess.resolve("no-such-tool-bordergate", path: "/bin:/usr/bin") == nil)
        #expect(ChildProcess.resolve("/bin/sh") == "/bin/sh")
        #expect(ChildProcess.resolve("/nonexistent/sh") == nil)
    }
}
