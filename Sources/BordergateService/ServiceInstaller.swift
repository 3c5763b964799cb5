import Foundation

/// `bordergate install-service` / `uninstall-service`: the unit file, and systemd told of it.
public enum ServiceInstaller {
    /// Whether systemd runs this machine (sd_booted): then `systemctl daemon-reload` is needed.
    public static var systemdRunning: Bool { FileManager.default.fileExists(atPath: "/run/systemd/system") }

    /// The binary to put in ExecStart: this process's own executable.
    public static var currentBinary: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Writes the unit (0644, replaced by rename) and reloads systemd if it runs. Returns what
    /// was done, a line each.
    public static func install(directory: String = SystemdUnit.defaultDirectory, binary: String = currentBinary,
                               reload: Bool = true) throws -> [String] {
        guard binary.hasPrefix("/") else { throw ServiceError("the binary must be an absolute path, not \(binary)") }
        let path = directory + "/" + SystemdUnit.name
        let text = SystemdUnit.text(binary: binary)
        var done: [String] = []
        let before = try? String(contentsOfFile: path, encoding: .utf8)
        if before == text {
            done.append("\(path) is already this unit (ExecStart=\(binary) daemon)")
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o644)
            } catch {
                throw ServiceError("cannot write \(path): \(error.localizedDescription); run as root, or give --unit-dir")
            }
            done.append((before == nil ? "wrote " : "replaced ") + "\(path) (ExecStart=\(binary) daemon)")
        }
        if reload { done.append(contentsOf: try daemonReload()) }
        done.append("start it with: systemctl enable --now bordergate; reload its config with: systemctl reload bordergate")
        return done
    }

    /// Stops and disables the service if systemd runs it, removes the unit and reloads systemd.
    /// The guards stay pinned (fail closed) until `bordergate detach --all`.
    public static func uninstall(directory: String = SystemdUnit.defaultDirectory, reload: Bool = true) throws -> [String] {
        let path = directory + "/" + SystemdUnit.name
        var done: [String] = []
        if reload && systemdRunning {
            let r = run(["/bin/systemctl", "disable", "--now", SystemdUnit.name])
            done.append(r.status == 0 ? "stopped and disabled \(SystemdUnit.name)" : "systemctl disable --now \(SystemdUnit.name): \(r.output)")
        }
        if FileManager.default.fileExists(atPath: path) {
            guard unlink(path) == 0 else { throw ServiceError("cannot remove \(path): \(String(cString: strerror(errno))); run as root") }
            done.append("removed \(path)")
        } else {
            done.append("no unit at \(path)")
        }
        if reload { done.append(contentsOf: try daemonReload()) }
        done.append("guards stay in place and refuse guarded connections until a daemon returns; remove them with: bordergate detach --all")
        return done
    }

    static func daemonReload() throws -> [String] {
        guard systemdRunning else { return ["systemd is not running here: nothing to reload"] }
        let r = run(["/bin/systemctl", "daemon-reload"])
        guard r.status == 0 else { throw ServiceError("systemctl daemon-reload failed: \(r.output)") }
        return ["systemctl daemon-reload"]
    }

    static func run(_ argv: [String]) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, out.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
