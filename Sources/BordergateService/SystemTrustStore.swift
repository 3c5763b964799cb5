import BordergateCertificates
import Foundation

/// The system trust store, for hosts where tools run outside `exec` (a CI runner's jobs): Debian's
/// `update-ca-certificates` adds the files under /usr/local/share/ca-certificates to the bundle
/// every OpenSSL, GnuTLS, curl and Python reads. A JVM keeps its own keystore (cacerts) and
/// needs `keytool -importcert` as well.
public enum SystemTrustStore {
    public static let directory = "/usr/local/share/ca-certificates"
    public static let fileName = "bordergate-local-ca.crt"
    public static var path: String { directory + "/" + fileName }

    /// Adds the CA (made first if there is none) and rebuilds the bundle.
    public static func install(settings: Settings) throws -> LocalCA {
        let ca = try LocalCA.loadOrCreate(LocalCA.Files(stateDirectory: settings.stateDirectory))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: Data(ca.certificatePEM.utf8),
                                             attributes: [.posixPermissions: 0o644]) else {
            throw ServiceError("cannot write \(path); run as root")
        }
        try run(["update-ca-certificates"])
        return ca
    }

    /// Removes the CA and rebuilds the bundle without it (`--fresh` drops its hashed link too).
    /// Says whether it was installed.
    public static func uninstall() throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        guard unlink(path) == 0 else { throw ServiceError("cannot remove \(path); run as root") }
        try run(["update-ca-certificates", "--fresh"])
        return true
    }

    private static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/update-ca-certificates")
        guard FileManager.default.isExecutableFile(atPath: process.executableURL!.path) else {
            throw ServiceError("/usr/sbin/update-ca-certificates is missing; install Debian's ca-certificates package (apt-get install ca-certificates)")
        }
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ServiceError("update-ca-certificates exited with status \(process.terminationStatus); the system bundle may be stale, run it by hand")
        }
    }
}
