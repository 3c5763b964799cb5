import CBordergateABI
import Foundation
import Testing
@testable import BordergateKernel

@Suite struct ABITests {
    @Test func addressesFormatLikePeopleWriteThem() {
        #expect(KernelAddress("198.51.100.10")?.description == "198.51.100.10")
        #expect(KernelAddress("198.51.100.10")?.isIPv4Mapped == true)
        #expect(KernelAddress("::ffff:198.51.100.10")?.description == "198.51.100.10")
        #expect(KernelAddress("2001:db8::10")?.description == "2001:db8::10")
        #expect(KernelAddress("2001:db8::10")?.isIPv4Mapped == false)
        #expect(KernelAddress("not an address") == nil)
        #expect(KernelAddress("198.51.100.10")?.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 10])
        for text in ["0.0.0.0", "9.10.99.100", "255.255.255.255", "203.0.113.7"] {
            #expect(KernelAddress(text)?.description == text)
        }
    }

    @Test func tupleKeysMatchTheKernelLayout() {
        let key = tupleKey(address: KernelAddress("127.0.0.1")!, port: 40000)
        let bytes = withUnsafeBytes(of: key) { Array($0) }
        #expect(bytes.count == 24)
        #expect(Array(bytes[10..<16]) == [0xff, 0xff, 127, 0, 0, 1])
        #expect(bytes[16] == UInt8(40000 & 0xff) && bytes[17] == UInt8(40000 >> 8), "port in host order")
    }

    @Test func decodesAConnectEventAsTheKernelWritesIt() {
        var raw = bg_connect_event()
        raw.kind = UInt32(BG_EVENT_CONNECT.rawValue)
        raw.verdict = UInt32(BG_VERDICT_REDIRECT.rawValue)
        raw.protocol = 6
        raw.id.pid = 11
        raw.id.tgid = 10
        raw.id.uid = 1000
        raw.id.cgroup_id = 99
        raw.id.cookie = 0xabc
        raw.ppid = 9
        raw.dst.port = 443
        raw.dst.addr = KernelAddress("203.0.113.7")!.raw
        withUnsafeMutableBytes(of: &raw.id.comm) { $0.copyBytes(from: Array("curl".utf8)) }
        withUnsafeMutableBytes(of: &raw.exe) { $0.copyBytes(from: Array("/usr/bin/curl".utf8)) }
        let e = KernelConnectEvent(raw)
        #expect(e.verdict == .redirect)
        #expect(e.identity.comm == "curl")
        #expect(e.identity.tgid == 10 && e.identity.pid == 11 && e.ppid == 9)
        #expect(e.exe == "/usr/bin/curl")
        #expect(e.destination.description == "203.0.113.7" && e.port == 443)
    }

    @Test func aFullCommWithoutTerminatorStillDecodes() {
        var raw = bg_connect_event()
        withUnsafeMutableBytes(of: &raw.id.comm) { $0.copyBytes(from: Array("0123456789abcdef".utf8)) }
        #expect(KernelConnectEvent(raw).identity.comm == "0123456789abcdef")
    }

    @Test func theEmbeddedObjectIsAnELFForBPF() throws {
        let data = try #require(Data(base64Encoded: embeddedBordergateBPFObjectBase64))
        #expect(data.prefix(4) == Data([0x7f, 0x45, 0x4c, 0x46]))
        // e_machine at offset 18: EM_BPF = 247
        #expect(data[18] == 247)
    }
}
