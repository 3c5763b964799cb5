// Secrets: keys and tokens with known prefixes, `password=`-style values, Authorization, JWTs, PEM blocks.

extension Probe {

    mutating func authorization(_ colon: Int) -> (Int, Int)? {
        var k = colon
        if b(k - 1) == UInt8(ascii: "\"") { k -= 1 }
        guard matchesLower(k - 13, "authorization"), !isAlnum(b(k - 14)) else { return nil }
        var v = colon + 1, spaces = 0
        while b(v) == UInt8(ascii: " ") && spaces < 4 { v += 1; spaces += 1 }
        let quoted = b(v) == UInt8(ascii: "\"")
        if quoted { v += 1 }
        // `Bearer`, `Basic` and `Token` carry one token: the value ends with it. Other schemes
        // (Digest, AWS4-HMAC-SHA256, ...) carry parameters: the value runs to the end of the line.
        var e = v
        if matchesLower(v, "bearer ") || matchesLower(v, "basic ") || matchesLower(v, "token ") {
            e = v + (asciiLower(b(v)) == UInt8(ascii: "b") ? (asciiLower(b(v + 1)) == UInt8(ascii: "e") ? 7 : 6) : 6)
            while e - v < 1024 {
                let c = b(e)
                if isSpaceByte(c) || c == 0 || c == UInt8(ascii: "\"") || c == UInt8(ascii: ",") || c == UInt8(ascii: ";") { break }
                e += 1
            }
            if e == v + 7 || e == v + 6 { return nil }
            return (v, e)
        }
        while e - v < 1024 {
            let c = b(e)
            if c == 0 && e >= n { break }
            if c == UInt8(ascii: "\r") || c == UInt8(ascii: "\n") || (quoted && c == UInt8(ascii: "\"")) { break }
            e += 1
        }
        while e > v && p[e - 1] == UInt8(ascii: " ") { e -= 1 }
        return e > v ? (v, e) : nil
    }

    private static let secretKeys: [StaticString] = ["password", "passwd", "pwd", "secret", "api_key", "apikey", "api-key",
                                                     "access_token", "auth_token"]

    mutating func keyValue(_ eq: Int, floor: Int) -> (Int, Int)? {
        var k = eq
        while k > floor && p[k - 1] == UInt8(ascii: " ") && eq - k < 2 { k -= 1 }
        var ks = k
        @inline(__always) func isKey(_ c: UInt8) -> Bool { isWord(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") }
        while ks > floor && isKey(p[ks - 1]) && k - ks < 32 { ks -= 1 }
        if ks == k || isKey(b(ks - 1)) { return nil }
        var found = false
        for key in Probe.secretKeys where k - ks >= key.utf8CodeUnitCount && matchesLower(k - key.utf8CodeUnitCount, key) {
            found = true; break
        }
        guard found else { return nil }
        var v = eq + 1, spaces = 0
        while b(v) == UInt8(ascii: " ") && spaces < 2 { v += 1; spaces += 1 }
        let q = b(v)
        let quote = q == UInt8(ascii: "\"") || q == UInt8(ascii: "'") ? q : 0
        if quote != 0 { v += 1 }
        var e = v
        while e - v < 256 {
            let c = b(e)
            if c == 0 && e >= n { break }
            if quote != 0 {
                if c == quote || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") { break }
            } else if isSpaceByte(c) || c == 0 || c == UInt8(ascii: "&") || c == UInt8(ascii: "\"") || c == UInt8(ascii: "'")
                        || c == UInt8(ascii: ";") || c == UInt8(ascii: ",") || c == UInt8(ascii: "<") || c == UInt8(ascii: ">")
                        || c == UInt8(ascii: "}") || c == UInt8(ascii: ")") || c == UInt8(ascii: "]") {
                break
            }
            e += 1
        }
        return e > v ? (v, e) : nil
    }

    private mutating func run(_ from: Int, max: Int, _ ok: (UInt8) -> Bool) -> Int {
        var j = from
        while j - from <= max && ok(b(j)) { j += 1 }
        return j - from
    }

    mutating func underscoreToken(_ u: Int) -> (Int, Int)? {
        let p1 = b(u - 1)
        if b(u - 3) == UInt8(ascii: "g") && b(u - 2) == UInt8(ascii: "h") && Array("pousr".utf8).contains(p1) && !isWord(b(u - 4)) {
            let len = run(u + 1, max: 255, isAlnum)
            return len >= 36 && len <= 255 && !isWord(b(u + 1 + len)) ? (u - 3, u + 1 + len) : nil
        }
        if p1 == UInt8(ascii: "b") && matches(u - 6, "github_pat_") && !isWord(b(u - 7)) {
            let len = run(u + 5, max: 255, isWord)
            return len >= 22 && len <= 255 && !isWord(b(u + 5 + len)) ? (u - 6, u + 5 + len) : nil
        }
        if p1 == UInt8(ascii: "k") && (b(u - 2) == UInt8(ascii: "s") || b(u - 2) == UInt8(ascii: "r")) && !isWord(b(u - 3))
            && matches(u + 1, "live_") {
            let len = run(u + 6, max: 255, isAlnum)
            return len >= 16 && len <= 255 && !isWord(b(u + 6 + len)) ? (u - 2, u + 6 + len) : nil
        }
        return nil
    }

    mutating func dashToken(_ d: Int) -> (Int, Int)? {
        if b(d + 1) == UInt8(ascii: "-") {
            guard b(d - 1) != UInt8(ascii: "-"), matches(d, "-----BEGIN ") else { return nil }
            var j = d + 11
            let labelStart = j
            while b(j) != UInt8(ascii: "-") && j - labelStart < 64 && b(j) >= 0x20 { j += 1 }
            guard matches(j, "-----"), j - labelStart >= 11 else { return nil }
            let labelEnd = j
            var ok = true
            do {
                var k = 0
                let tail = Array("PRIVATE KEY".utf8)
                while k < 11 { if p[labelEnd - 11 + k] != tail[k] { ok = false }; k += 1 }
            }
            guard ok else { return nil }
            j += 5
            // the END line names the same label
            while j - d < MaskingEngine.pemLimit {
                let c = b(j)
                if c == 0 && j >= n { return nil }
                if c == UInt8(ascii: "-") && matches(j, "-----END ") {
                    var same = true
                    for k in 0..<(labelEnd - labelStart) where b(j + 9 + k) != p[labelStart + k] { same = false; break }
                    let e = j + 9 + (labelEnd - labelStart)
                    if same && matches(e, "-----") { return (d, e + 5) }
                }
                j += 1
            }
            return nil
        }
        guard matches(d - 4, "xox"), Array("abposr".utf8).contains(b(d - 1)), !isWord(b(d - 5)) else { return nil }
        let len = run(d + 1, max: 255, { isAlnum($0) || $0 == UInt8(ascii: "-") })
        return len >= 10 && len <= 255 && !isWord(b(d + 1 + len)) ? (d - 4, d + 1 + len) : nil
    }

    mutating func upperA(_ a: Int) -> (Int, Int, BuiltinDetector)? {
        guard !isWord(b(a - 1)) else { return nil }
        let c1 = b(a + 1)
        if (c1 == UInt8(ascii: "K") && matches(a + 2, "IA")) || (c1 == UInt8(ascii: "S") && matches(a + 2, "IA")) {
            for k in 4..<20 { let c = b(a + k); if !(isUpper(c) || isDigit(c)) { return nil } }
            return isWord(b(a + 20)) ? nil : (a, a + 20, .awsAccessKey)
        }
        if c1 == UInt8(ascii: "I") && matches(a + 2, "za") {
            for k in 4..<39 where !isB64(b(a + k)) { return nil }
            return isB64(b(a + 39)) ? nil : (a, a + 39, .secretToken)
        }
        return nil
    }

    mutating func jwt(_ jIndex: Int) -> (Int, Int)? {
        let s = jIndex - 2
        guard s >= 0, b(s) == UInt8(ascii: "e"), b(s + 1) == UInt8(ascii: "y"), !isB64(b(s - 1)), b(s - 1) != UInt8(ascii: ".") else { return nil }
        let limit = MaskingEngine.jwtLimit
        let h = run(s, max: limit, isB64)
        guard h >= 16, h <= limit, b(s + h) == UInt8(ascii: ".") else { return nil }
        let pl = run(s + h + 1, max: limit, isB64)
        guard pl >= 2, pl <= limit, b(s + h + 1 + pl) == UInt8(ascii: ".") else { return nil }
        let sigStart = s + h + 2 + pl
        let sig = run(sigStart, max: limit, isB64)
        guard sig <= limit, b(sigStart + sig) != UInt8(ascii: ".") || !isB64(b(sigStart + sig + 1)) else { return nil }
        guard Base64URL.headerHasAlg(p, s, min(h, 1024), unsigned: sig == 0) else { return nil }
        return (s, sigStart + sig)
    }
}
