// Syntax checks the detectors validate with: IPv6 groups, a JWT header that decodes to JSON with `alg`.

enum IPv6Syntax {
    static func isValid(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> Bool {
        var groups = 0, doubleColon = false, j = s, hexDigits = 0
        if e - s < 2 { return false }
        if p[j] == UInt8(ascii: ":") {
            guard j + 1 < e, p[j + 1] == UInt8(ascii: ":") else { return false }
            doubleColon = true; j += 2
            if j == e { return false }   // "::" alone
        }
        while j < e {
            var len = 0, k = j
            while k < e && isHex(p[k]) && len <= 4 { k += 1; len += 1 }
            if k < e && p[k] == UInt8(ascii: ".") {
                // an embedded IPv4 address ends the text
                guard groups <= 6, isV4(p, j, e) else { return false }
                groups += 2
                j = e
                break
            }
            guard len >= 1, len <= 4 else { return false }
            hexDigits += len; groups += 1; j = k
            if j == e { break }
            guard p[j] == UInt8(ascii: ":") else { return false }
            j += 1
            if j < e && p[j] == UInt8(ascii: ":") {
                if doubleColon { return false }
                doubleColon = true; j += 1
                if j == e { break }
            } else if j == e {
                return false
            }
        }
        _ = hexDigits
        return doubleColon ? groups <= 7 && groups >= 1 : groups == 8
    }

    private static func isV4(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> Bool {
        var parts = 0, value = 0, len = 0, j = s
        while j <= e {
            if j == e || p[j] == UInt8(ascii: ".") {
                guard len >= 1, len <= 3, value <= 255 else { return false }
                parts += 1; value = 0; len = 0
            } else if isDigit(p[j]) {
                // a fourth digit already fails: without this, a long run of digits overflowed
                // `value` and trapped (found by fuzzing: "D:0.4444…" in a body crashed the proxy)
                guard len < 3 else { return false }
                value = value * 10 + Int(p[j] - 48); len += 1
            } else {
                return false
            }
            j += 1
        }
        return parts == 4
    }
}

enum Base64URL {
    /// Does the JWT header (base64url at p[s..<s+len]) decode to a JSON object naming `alg`?
    /// An unsigned token (empty third part) must say `"none"`: else `a.b.` at a sentence's end would do.
    static func headerHasAlg(_ p: UnsafeBufferPointer<UInt8>, _ s: Int, _ len: Int, unsigned: Bool) -> Bool {
        var out = [UInt8](), acc: UInt32 = 0, bits = 0
        out.reserveCapacity(len * 3 / 4)
        for k in 0..<len {
            let c = p[s + k]
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 71)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c) + 4
            case UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "_"): v = 63
            default: return false
            }
            acc = acc << 6 | v; bits += 6
            if bits >= 8 { bits -= 8; out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits))) }
        }
        guard out.first == UInt8(ascii: "{") else { return false }
        return contains(out, "\"alg\"") && (!unsigned || contains(out, "\"none\""))
    }

    private static func contains(_ out: [UInt8], _ text: String) -> Bool {
        let needle = Array(text.utf8)
        guard out.count >= needle.count else { return false }
        for k in 0...(out.count - needle.count) where out[k..<(k + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
