import Foundation
import Testing

extension EndToEnd {
    /// Two test networks on the same addresses would split their traffic by route order: the
    /// second is refused, in one line that names the first and the way out.
    @Test func aSecondTestNetworkOnTheSameAddressesIsRefused() throws {
        try Harness.requireEnvironment() // the tests' own network is up
        let r = Harness.sh("\(Harness.packageRoot)/scripts/testnet.sh up bgclash")
        defer { _ = Harness.sh("\(Harness.packageRoot)/scripts/testnet.sh down bgclash") }
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("already on interface \(Harness.netName)-h") && r.stderr.contains("BG_NET_PREFIX4"), "\(r.stderr)")
        #expect(!Harness.sh("ip netns list").stdout.contains("bgclash"), "a namespace was made anyway")
        // and the tests' network still answers
        #expect(Harness.sh("curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://\(Harness.host4)/").stdout == "200")
    }
}
