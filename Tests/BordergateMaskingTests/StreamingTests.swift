import Testing
import BordergateMasking

@Suite struct StreamingTests {
    static let values = [
        "alice.smith@example.com", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "123-45-6789", "+1 (202) 555-0143",
        "198.51.100.7", "2001:db8:85a3::8a2e:370:7334", "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----",
        "ghp_a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2", "password=hunter2", "Authorization: Bearer abcdef123456",
    ]

    func streamed(_ e: MaskingEngine, _ bytes: [UInt8], cuts: [Int]) -> (String, MaskCounts) {
        var s = e.makeStream()
        var out = [UInt8](), at = 0
        for c in cuts + [bytes.count] {
            out += s.feed(bytes[at..<c])
            at = c
        }
        out += s.finish()
        return (String(decoding: out, as: UTF8.self), s.counts)
    }

    @Test(arguments: values) func splitAtEveryOffset(value: String) {
        let text = "before \(value) after\n"
        let bytes = Array(text.utf8)
        let whole = engine.mask(text)
        #expect(whole.counts.total == 1, "\(value): \(whole.text)")
        for cut in 0...bytes.count {
            let (out, counts) = streamed(engine, bytes, cuts: [cut])
            #expect(out == whole.text, "cut at \(cut): \(out)")
            #expect(counts == whole.counts)
        }
        // and one byte at a time
        #expect(streamed(engine, bytes, cuts: Array(0...bytes.count)).0 == whole.text)
    }

    @Test func heldBackIsBounded() {
        var s = engine.makeStream()
        var rng = SplitMix(state: 7)
        let alphabet = Array("abc 123-.:@_=AJ\n".utf8)
        var maxHeld = 0
        for _ in 0..<2000 {
            let chunk = (0..<Int.random(in: 1...300, using: &rng)).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
            _ = s.feed(chunk)
            maxHeld = max(maxHeld, s.heldBytes)
        }
        #expect(maxHeld <= 1024 + 300, "held \(maxHeld)")
        // a word with no end is not held whole
        var w = engine.makeStream()
        for _ in 0..<100 { _ = w.feed([UInt8](repeating: UInt8(ascii: "x"), count: 1000)) }
        #expect(w.heldBytes <= 64)
    }

    /// Found by fuzzing: a field-ruled JSON value with a raw line break (NDJSON that is not valid
    /// JSON) lost the break, which the stream must never do.
    @Test func aRawLineBreakInAMaskedJSONValueIsKept() {
        let e = MaskingEngine(MaskingConfiguration(fields: ["password"]))
        for strategy in MaskStrategy.allCases {
            let e2 = MaskingEngine(MaskingConfiguration(strategy: strategy, fields: ["password"], hashKey: [1]))
            var stream = (strategy == .redact ? e : e2).makeJSONStream()
            let body = Array("{\"password\": \"hunter\n2\"}\n{\"a\": 1}\n".utf8)
            let out = stream.feed(body) + stream.finish()
            #expect(out.filter { $0 == 10 }.count == 3, "\(strategy): \(String(decoding: out, as: UTF8.self))")
            #expect(!String(decoding: out, as: UTF8.self).contains("hunter"), "\(strategy)")
        }
    }

    /// Found by fuzzing: an IPv6-looking text with an "embedded IPv4" part of many digits
    /// overflowed the octet's value and trapped, which took the proxy down with it.
    @Test func aLongDigitRunAfterAnIPv6PrefixDoesNotTrap() {
        let r = engine.mask(" D:0.44444444444444444440 ::1:2.3333333333333333333333")
        #expect(r.text == " D:0.44444444444444444440 ::1:2.3333333333333333333333")
    }
}
