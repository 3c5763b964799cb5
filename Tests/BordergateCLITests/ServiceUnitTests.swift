import BordergateService
import Foundation
import Testing

@Suite struct ServiceUnitTests {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    @Test func contribIsTheUnitInstallServiceWrites() throws {
        let contrib = try String(contentsOfFile: Self.packageRoot + "/contrib/bordergate.service", encoding: .utf8)
        #expect(contrib == SystemdUnit.text(binary: "/usr/local/bin/bordergate"),
                "regenerate it: bordergate install-service --unit-dir contrib --binary /usr/local/bin/bordergate --no-reload")
    }

    @Test func theUnitRunsTheDaemonAsANotifyServiceThatReloadsOnSIGHUPAndMayLoadBPF() {
        let text = SystemdUnit.text(binary: "/opt/bg/bordergate")
        for line in ["Type=notify", "ExecStart=/opt/bg/bordergate daemon", "ExecReload=/bin/kill -HUP $MAINPID",
                     "Restart=on-failure", "LimitMEMLOCK=infinity", "ReadWritePaths=/sys/fs/bpf /var/lib/bordergate /run/bordergate"] {
            #expect(text.contains("\n" + line + "\n"), "\(line)")
        }
        let caps = text.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") } ?? ""
        for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"] {
            #expect(caps.contains(cap), "\(cap)")
        }
        // what would make bpffs or the cgroup tree read-only is not there
        #expect(!text.contains("ProtectKernelTunables=yes") && !text.contains("ProtectControlGroups=yes"))
    }

    @Test func installWritesTheUnitOnceAndUninstallRemovesIt() throws {
        let dir = NSTemporaryDirectory() + "bg-unit-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try ServiceInstaller.install(directory: dir, binary: "/bin/true", reload: false)
        #expect(first.first == "wrote \(dir)/bordergate.service (ExecStart=/bin/true daemon)", "\(first)")
        let again = try ServiceInstaller.install(directory: dir, binary: "/bin/true", reload: false)
        #expect(again.first?.hasSuffix("is already this unit (ExecStart=/bin/true daemon)") == true, "\(again)")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/bordergate.service")[.posixPermissions] as? Int
        #expect(mode == 0o644)
        // systemd's own check of the unit, where systemd-analyze is installed
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
            p.arguments = ["verify", dir + "/bordergate.service"]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            let own = out.split(separator: "\n").filter { $0.contains("bordergate.service") }
            #expect(p.terminationStatus == 0 && own.isEmpty, "systemd-analyze verify: \(out)")
        }
        let removed = try ServiceInstaller.uninstall(directory: dir, reload: false)
        #expect(removed.first == "removed \(dir)/bordergate.service", "\(removed)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/bordergate.service"))
        #expect(throws: ServiceError.self) { try ServiceInstaller.install(directory: dir, binary: "bordergate", reload: false) }
    }
}
