import Testing
import BordergateMasking

@Suite struct PropertyTests {
    /// Random text salted with values: the output is the input with each detection replaced by its
    /// token, every other byte unchanged; line breaks are all kept; streaming in random chunks gives
    /// the same output as the whole.
    @Test func bytesOutsideDetectionsAreUnchanged() {
        var rng = SplitMix(state: 42)
        let alphabet = Array("abcdefXYZ0123456789 .,:;-_=@+()/\"'{}[]\n\t\u{7f}".utf8) + [0xC3, 0xA9, 0xFF, 0x00]
        for strategy in MaskStrategy.allCases {
            let e = MaskingEngine(MaskingConfiguration(strategy: strategy, hashKey: [1, 2, 3]))
            for _ in 0..<300 {
                var input = [UInt8]()
                for _ in 0..<Int.random(in: 1...12, using: &rng) {
                    for _ in 0..<Int.random(in: 0...60, using: &rng) {
                        input.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)])
                    }
                    if Bool.random(using: &rng) {
                        input += Array(StreamingTests.values.randomElement(using: &rng)!.utf8)
                    }
                }
                let detections = e.detect(input)
                let masked = e.mask(input).bytes
                // walk the output: the bytes between detections are the input's, each detection is its token
                var cursor = 0, at = 0, ok = true
                for d in detections {
                    ok = ok && d.range.lowerBound >= at
                    let between = input[at..<d.range.lowerBound]
                    ok = ok && masked.count >= cursor + between.count && masked[cursor..<(cursor + between.count)].elementsEqual(between)
                    cursor += between.count
                    let token = expectedToken(e, Array(input[d.range]), d.detector)
                    let got = masked[min(cursor, masked.count)..<min(cursor + token.count, masked.count)]
                    ok = ok && got.count == token.count && zip(got, token).allSatisfy { $1 == 0 || $0 == $1 }
                    cursor += token.count
                    at = d.range.upperBound
                }
                ok = ok && masked[min(cursor, masked.count)...].elementsEqual(input[at...])
                #expect(ok, "\(strategy): \(String(decoding: input, as: UTF8.self)) -> \(String(decoding: masked, as: UTF8.self))")
                #expect(masked.filter { $0 == 10 }.count == input.filter { $0 == 10 }.count)
                var s = e.makeStream()
                var out = [UInt8](), i = 0
                while i < input.count {
                    let n = Int.random(in: 1...40, using: &rng)
                    out += s.feed(input[i..<min(i + n, input.count)])
                    i += n
                }
                out += s.finish()
                #expect(out == masked)
            }
        }
    }

    /// The token one detection becomes, from its own bytes (values are ASCII); 0 stands for any hex digit.
    func expectedToken(_ e: MaskingEngine, _ value: [UInt8], _ detector: String) -> [UInt8] {
        let label = Array(detector.uppercased().utf8)
        let breaks = value.filter { $0 == 10 || $0 == 13 }
        switch e.configuration.strategy {
        case .redact:
            return [UInt8(ascii: "[")] + label + [UInt8(ascii: "]")] + breaks
        case .hash:
            return [UInt8(ascii: "[")] + label + [UInt8(ascii: ":")] + [UInt8](repeating: 0, count: 8) + [UInt8(ascii: "]")] + breaks
        case .partial:
            // characters are counted as UTF-8 (a continuation byte goes with its lead byte)
            func continues(_ c: UInt8) -> Bool { c & 0xC0 == 0x80 }
            let chars = value.filter { !continues($0) && $0 != 10 && $0 != 13 }.count
            var seen = 0
            var out = [UInt8]()
            for c in value {
                if c == 10 || c == 13 { out.append(c); continue }
                if continues(c) { if chars > 4 && seen > chars - 4 { out.append(c) }; continue }
                seen += 1
                out.append(chars > 4 && seen > chars - 4 ? c : UInt8(ascii: "*"))
            }
            return out
        }
    }

    @Test func partialKeepsLengthAndTail() {
        let e = MaskingEngine(MaskingConfiguration(strategy: .partial))
        for v in StreamingTests.values where e.detect(Array(v.utf8)).first?.range == 0..<v.utf8.count {
            let out = e.mask(Array(v.utf8)).bytes
            #expect(out.count == v.utf8.count)
            #expect(out.suffix(4) == Array(v.utf8).suffix(4))
            #expect(out.dropLast(4).allSatisfy { $0 == UInt8(ascii: "*") || $0 == 10 })
        }
    }
}
