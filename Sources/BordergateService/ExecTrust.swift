import BordergateCertificates
import BordergateKernel
import BordergatePolicy
import Foundation

/// "No tool is reconfigured": a command that `exec` runs under an intercepting policy trusts the
/// local CA through the paths and variables tools already read. In the child's own mount
/// namespace the system CA bundle files show the system bundle plus the CA (read-only), and the
/// usual variables point at that bundle. Nothing outside the child changes.
public enum ExecTrust {
    /// Where distributions keep the bundle OpenSSL, GnuTLS, curl, git, Python and Node read.
    public static let systemBundlePaths = ["/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/cert.pem",
                                           "/etc/pki/tls/certs/ca-bundle.crt"]
    /// Read by tools that do not use the system's default paths.
    public static let environmentVariables = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                                              "GIT_SSL_CAINFO", "PIP_CERT", "AWS_CA_BUNDLE"]

    public struct Injection: Sendable, Equatable {
        /// The combined bundle (system + local CA), in the state directory.
        public var bundle: String
        /// The system bundle files it is mounted over (symbolic links resolved, each once).
        public var targets: [String]
        /// What the variables are set to: the first target (readable by any user), else the bundle.
        public var path: String { targets.first ?? bundle }
    }

    /// The policy `exec` will run under, from the config file the daemon reads; nil when it
    /// cannot be read here (the daemon decides, and interception is then not injected).
    static func policy(named name: String?, settings: Settings) -> Policy? {
        guard let config = try? ResidencyConfig.loadConfigOnly(settings: settings) else { return nil }
        return config.policies[name ?? config.defaultPolicy]
    }

    /// Writes the combined bundle when `policy` intercepts TLS; nil when it does not.
    static func prepare(for policy: Policy?, settings: Settings) throws -> Injection? {
        guard policy?.tls == .intercept else { return nil }
        let files = LocalCA.Files(stateDirectory: settings.stateDirectory)
        let ca = try LocalCA.loadOrCreate(files)
        var targets: [String] = []
        for path in systemBundlePaths {
            guard let real = realpath(path, nil) else { continue }
            let resolved = String(cString: real)
            free(real)
            if !targets.contains(resolved) { targets.append(resolved) }
        }
        let system = targets.first.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        var text = system
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        text += "# Bordergate local CA (bordergate ca export), added for this command only\n" + ca.certificatePEM
        let bundle = files.directory + "/exec-bundle.pem"
        let tmp = bundle + ".tmp.\(getpid())"
        // 0644: the command runs as its own user and must read it through the mount
        guard FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw ServiceError("cannot write \(tmp): check that \(files.directory) is writable")
        }
        guard rename(tmp, bundle) == 0 else {
            unlink(tmp)
            throw ServiceError("cannot write \(bundle): \(String(validatingCString: strerror(errno)) ?? "errno \(errno)")")
        }
        return Injection(bundle: bundle, targets: targets)
    }

    /// The command's environment with every CA variable pointing at the combined bundle.
    static func environment(_ base: [String: String], _ injection: Injection?) -> [String: String] {
        guard let injection else { return base }
        var env = base
        for name in environmentVariables { env[name] = injection.path }
        return env
    }

    static func apply(_ injection: Injection?, to privileges: inout ChildProcess.Privileges) {
        guard let injection else { return }
        privileges.trustBundle = injection.bundle
        privileges.trustTargets = injection.targets
    }
}
