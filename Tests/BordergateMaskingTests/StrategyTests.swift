import Testing
import BordergateMasking

@Suite struct StrategyTests {
    let text = "card 4111 1111 1111 1111, mail Alice@Example.com\n"

    @Test func redact() {
        let r = engine.mask(text)
        #expect(r.text == "card [CREDIT-CARD], mail [EMAIL]\n")
        #expect(r.counts.detectors == ["credit-card": 1, "email": 1])
        #expect(r.counts.total == 2)
    }

    @Test func partial() {
        let e = MaskingEngine(MaskingConfiguration(strategy: .partial, fields: ["password"]))
        let r = e.mask(text).text
        #expect(r == "card ***************1111, mail *************.com\n")
        #expect(r.utf8.count == text.utf8.count)
        #expect(e.mask("x", field: "password").text == "*")
        #expect(e.mask("hunter22", field: "password").text == "****er22")
    }

    @Test func hash() {
        let e = MaskingEngine(MaskingConfiguration(strategy: .hash, fields: ["password"], hashKey: Array("k1".utf8)))
        let r = e.mask(text).text
        let tokens = r.split(separator: " ").filter { $0.hasPrefix("[") }
        #expect(tokens.count == 2)
        #expect(tokens[0].hasPrefix("[CREDIT-CARD:") && tokens[0].count == "[CREDIT-CARD:12345678],".count)
        // stable, and the same value in another format masks the same way
        #expect(e.mask("4111-1111-1111-1111").text == e.mask("4111111111111111").text)
        #expect(e.mask("alice@example.com").text == e.mask("ALICE@example.COM").text)
        #expect(e.mask("4111111111111111").text != e.mask("5555555555554444").text)
        // keyed: another key, another token
        let other = MaskingEngine(MaskingConfiguration(strategy: .hash, hashKey: Array("k2".utf8)))
        #expect(other.mask("4111111111111111").text != e.mask("4111111111111111").text)
        #expect(e.mask("pw", field: "password").text.hasPrefix("[REDACTED:"))
    }

    @Test func lineBreaksOfAMaskedValueStay() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\nAAAA\n-----END PRIVATE KEY-----"
        for strategy in MaskStrategy.allCases {
            let e = MaskingEngine(MaskingConfiguration(strategy: strategy))
            let out = e.mask("k: \(key)\nend").text
            #expect(out.filter { $0 == "\n" }.count == 4, "\(strategy): \(out)")
            #expect(!out.contains("MIIB"))
        }
    }

    @Test func fieldRules() {
        let e = MaskingEngine(MaskingConfiguration(fields: ["password", "*_token", "card?number"]))
        #expect(e.isMaskedField("Password"))
        #expect(e.isMaskedField("refresh_token"))
        #expect(e.isMaskedField("card_number"))
        #expect(!e.isMaskedField("token"))
        #expect(!e.isMaskedField("passwords"))
        let r = e.mask("plain words", field: "session_token")
        #expect(r.text == "[REDACTED]")
        #expect(r.counts.fields == ["session_token": 1])
        #expect(e.mask("a@example.com", field: "name").text == "[EMAIL]")
    }

    @Test func jsonStream() {
        let e = MaskingEngine(MaskingConfiguration(fields: ["password", "ssn", "*_token"]))
        let doc = #"{"user": {"name": "a@example.com", "password": "hun\"ter2", "ssn": 123456789, "ok": true, "#
            + #""list": ["password", {"access_token": "abc", "n": null}], "password": null}}"# + "\n"
        let want = #"{"user": {"name": "[EMAIL]", "password": "[REDACTED]", "ssn": "[REDACTED]", "ok": true, "#
            + #""list": ["password", {"access_token": "[REDACTED]", "n": null}], "password": null}}"# + "\n"
        let bytes = Array(doc.utf8)
        for size in [1, 2, 3, 7, 64, bytes.count] {
            var s = e.makeJSONStream()
            var out = [UInt8]()
            var i = 0
            while i < bytes.count {
                out += s.feed(bytes[i..<min(i + size, bytes.count)])
                i += size
            }
            out += s.finish()
            #expect(String(decoding: out, as: UTF8.self) == want, "chunks of \(size)")
            #expect(s.counts.fields == ["password": 1, "ssn": 1, "access_token": 1])
            #expect(s.counts.detectors == ["email": 1])
        }
        var p = MaskingEngine(MaskingConfiguration(strategy: .partial, fields: ["password"])).makeJSONStream()
        let out = p.feed(Array(#"{"password": "hunter22\\", "x": 1}"#.utf8)) + p.finish()
        #expect(String(decoding: out, as: UTF8.self) == #"{"password": "******22**", "x": 1}"#)
    }
}
