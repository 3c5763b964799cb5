import BordergateMasking
import BordergatePolicy
import Testing

@Suite struct MaskPolicyTests {
    let config = """
        maskers:
          employee-id: 'EMP-[0-9]{6}'
        policies:
          eu-masked:
            inspect: needed
            mask:
              detectors: [email, employee-id]
              strategy: hash
              fields: [password, "*_token"]
              headers: [Set-Cookie]
              on-error: pass
            record: true
          all-masked:
            mask: {detectors: all}
          plain: {}
        """

    @Test func theMaskBlockIsReadWithItsNames() throws {
        let c = try ConfigParser.parse(config, path: "cfg.yaml")
        let m = try #require(c.policies["eu-masked"]?.mask)
        #expect(m.detectors == [.email])
        #expect(m.custom == ["employee-id"])
        #expect(!m.allMaskers)
        #expect(m.strategy == .hash)
        #expect(m.fields == ["password", "*_token"])
        #expect(m.headers == ["set-cookie"])
        #expect(m.onError == .pass)
        #expect(c.policies["eu-masked"]?.record == true)
        let engine = m.configuration(maskers: c.maskers, hashKey: [1, 2, 3])
        #expect(engine.customDetectors.map(\.name) == ["employee-id"])
        #expect(engine.hashKey == [1, 2, 3])
        // detectors: all takes every built-in detector and every masker; the default is block
        let all = try #require(c.policies["all-masked"]?.mask)
        #expect(all.detectors == Set(BuiltinDetector.allCases))
        #expect(all.configuration(maskers: c.maskers, hashKey: []).customDetectors.map(\.name) == ["employee-id"])
        #expect(all.onError == .block)
        #expect(c.policies["plain"]?.mask == nil)
        #expect(c.policies["plain"]?.needsContent == false)
    }

    @Test func aPolicyThatMasksSendsEveryTCPConnectionThroughTheProxy() throws {
        let c = try ConfigParser.parse(config, path: "cfg.yaml")
        let catalog = c.catalog()
        let classes = ["", "loopback", "private", "DE"]
        // inspect: needed, but mask: needs the bytes, so an allowed destination is redirected
        let masked = try #require(c.policies["eu-masked"]).compile(classes: classes, catalog: catalog)
        #expect(masked[3].tcp == .redirect)
        #expect(masked[1].tcp == .pass) // loopback stays direct
        let plain = try #require(c.policies["plain"]).compile(classes: classes, catalog: catalog)
        #expect(plain[3].tcp == .pass)
    }
}
