import Foundation
import Yams

extension ConfigParser.Reader {
    /// `tls: {trust: [PEM files], passthrough: [globs], insecure-hosts: [globs]}`.
    func tlsSettings(_ n: Node) throws -> TLSSettings {
        var t = TLSSettings()
        if n.null != nil { return t }
        for (key, k, v) in try mapping(n, "tls") {
            switch key {
            case "trust":
                t.trust = try strings(v, "tls.trust")
                for file in t.trust {
                    // read now, so a typo is an error at its line rather than at the first connection
                    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                        throw fail(v, "tls.trust names \(file), which cannot be read; expected a PEM file of CA certificates")
                    }
                    guard text.contains("-----BEGIN CERTIFICATE-----") else {
                        throw fail(v, "tls.trust names \(file), which holds no PEM certificate; expected '-----BEGIN CERTIFICATE-----' blocks")
                    }
                }
            case "passthrough", "insecure-hosts":
                let globs = try strings(v, "tls.\(key)").map { pattern -> HostnameGlob in
                    guard let g = HostnameGlob(pattern) else {
                        throw fail(v, "tls.\(key): '\(pattern)' is not a hostname pattern; expected names like api.example.com or *.example.com")
                    }
                    return g
                }
                if key == "passthrough" { t.passthrough = globs } else { t.insecureHosts = globs }
            default:
                throw fail(k, "unknown key '\(key)' in tls; expected trust, passthrough or insecure-hosts")
            }
        }
        return t
    }
}
