import BordergateAudit
import Foundation
import Testing

extension EndToEnd {
    /// A daemon with `audit: {rotate: 64KiB}` writes several files; `audit verify` checks them all
    /// in order, and names a middle file removed by hand.
    @Test func aRotatingDaemonsLogVerifiesAcrossFilesAndARemovedMiddleFileIsNamed() throws {
        try Harness.requireEnvironment()
        let config = "audit: {rotate: 64KiB, retain: 90d}\n" + DaemonFixture.builtInConfig
        try withOwnDaemon("rotation", port: 17_425, config: config) { d, cg in
            #expect(try connections(250, in: cg).stdout.contains("done"))
            _ = d.waitForEvents { $0.connects().count >= 250 }
            d.stop()
            let audit = d.stateDir + "/audit"
            let rotated = try FileManager.default.contentsOfDirectory(atPath: audit).filter { $0.hasPrefix("events-") }.sorted()
            #expect(rotated.count >= 3, "\(rotated)")
            let ok = d.cli("audit verify")
            #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
            #expect(ok.stdout.contains(rotated[0]) && ok.stdout.contains("events.jsonl"), "every file is verified: \(ok.stdout)")
            // the first line of each later file signs and names the one before
            let second = try String(contentsOfFile: audit + "/" + rotated[1], encoding: .utf8)
            #expect(second.hasPrefix("{") && second.split(separator: "\n")[0].contains(#""continues":"\#(rotated[0])""#))

            // the history spans the files: events and export read them all
            let listed = d.cli("events --since 1h --type connect -o json").stdout.split(separator: "\n").count
            #expect(listed >= 250, "events reads the rotated files too: \(listed)")
            let bundle = d.stateDir + "/period.tar.gz"
            let export = d.cli("audit export --since 1h --out \(bundle)")
            #expect(export.status == 0, "\(export.stdout) \(export.stderr)")
            let checked = d.cli("audit verify --bundle \(bundle)")
            #expect(checked.status == 0 && checked.stdout.contains("ok: bundle"), "\(checked.stdout)")

            let moved = d.stateDir + "/" + rotated[1]
            try FileManager.default.moveItem(atPath: audit + "/" + rotated[1], toPath: moved)
            let gap = d.cli("audit verify")
            #expect(gap.status == 1, "\(gap.stdout)")
            #expect(gap.stdout.contains("FAILED: \(audit)/\(rotated[2]):1: deleted:"), "\(gap.stdout)")
            // only the later files: the start is anchored, but no retention event removed what came before
            let later = ([rotated[2]] + rotated.dropFirst(3)).map { audit + "/" + $0 } + [audit + "/events.jsonl"]
            let cut = d.cli("audit verify " + later.joined(separator: " "))
            #expect(cut.status == 1 && cut.stdout.contains("which no retention event records removing"), "\(cut.stdout)")
        }
    }
}
