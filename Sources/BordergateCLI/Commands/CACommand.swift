import ArgumentParser
import BordergateCertificates
import BordergateService
import Foundation

/// `bordergate ca`: the local CA that signs the certificates tools see under TLS interception.
struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Show, rotate, or install in the system trust store the CA of TLS interception.",
        discussion: "The CA lives in the state directory (tls/ca.pem, tls/ca.key 0600) and is made on first use.",
        subcommands: [Export.self, Rotate.self, Install.self, Uninstall.self])

    static func files(_ common: CommonOptions) -> LocalCA.Files { LocalCA.Files(stateDirectory: common.settings.stateDirectory) }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "export", abstract: "Print the CA certificate (PEM).")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                print(try LocalCA.loadOrCreate(CACommand.files(common)).certificatePEM, terminator: "")
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate", abstract: "Make a new CA in place of the old one; the daemon drops the old one's leaves.",
            discussion: "Tools that trusted the old CA (ca install, a JVM keystore) must be given the new one.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                let ca = try LocalCA.rotate(CACommand.files(common))
                print("new CA \(ca.subject), SHA-256 \(ca.fingerprint)")
                if FileManager.default.fileExists(atPath: SystemTrustStore.path) {
                    print("note: the old CA is in the system trust store; run `bordergate ca install` to replace it")
                }
            }
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install", abstract: "Add the CA to the system trust store (update-ca-certificates).",
            discussion: "For tools that run outside `bordergate exec`. A JVM's keystore is separate: keytool -importcert.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                let ca = try SystemTrustStore.install(settings: common.settings)
                print("installed \(SystemTrustStore.path) (SHA-256 \(ca.fingerprint)); the system bundle now trusts it")
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "uninstall", abstract: "Remove the CA from the system trust store.")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                print(try SystemTrustStore.uninstall() ? "removed \(SystemTrustStore.path); the system bundle no longer trusts it"
                                                       : "the CA was not installed (\(SystemTrustStore.path) is absent)")
            }
        }
    }
}
