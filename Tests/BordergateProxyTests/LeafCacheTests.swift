import BordergateCertificates
@testable import BordergateInspection
import Foundation
import Testing

@Suite struct LeafCacheTests {
    @Test func aSecondConnectionToAHostMintsNothingAndTheCacheStaysBounded() throws {
        let leaves = LeafContexts(ca: try LocalCA.make(hostName: "h"), capacity: 3)
        let first = try leaves.context(for: .dns("a.example"), copying: [])
        let again = try leaves.context(for: .dns("a.example"), copying: [.dns("ignored.example")])
        #expect(first === again, "the cached context is reused")
        #expect(leaves.minted == 1)
        for name in ["b", "c", "d"] { _ = try leaves.context(for: .dns("\(name).example"), copying: []) }
        #expect(leaves.minted == 4)
        // a was the least recently used: it went when d came in
        _ = try leaves.context(for: .dns("a.example"), copying: [])
        #expect(leaves.minted == 5)
        _ = try leaves.context(for: .dns("d.example"), copying: [])
        #expect(leaves.minted == 5)
    }

    @Test func aLeafNearItsEndIsRenewed() throws {
        let leaves = LeafContexts(ca: try LocalCA.make(hostName: "h"), capacity: 8)
        let now = Date()
        _ = try leaves.context(for: .dns("a.example"), copying: [], now: now)
        _ = try leaves.context(for: .dns("a.example"), copying: [], now: now.addingTimeInterval(LocalCA.leafValidity - 3600))
        #expect(leaves.minted == 2)
    }
}
