// The built-in detectors: one pass over the bytes, a 256-entry table that skips every byte which
// cannot be the trigger of a value (for most text: nearly all of them), and at each trigger a small
// hand-written matcher that also validates what it matched (Luhn, mod-97, TLD, ...).
//
// Streaming without per-detector logic: a matcher reads bytes through `Probe.b`, which records when
// it reads past the end of the buffer. A decision that needed a byte we do not have yet is not a
// decision: the scanner stops there and the stream keeps the bytes from the trigger's look-back on.

/// Character classes.
private let cDigit: UInt8 = 1, cUpper: UInt8 = 2, cLower: UInt8 = 4, cHex: UInt8 = 8
private let cLocal: UInt8 = 16   // e-mail local part
private let cB64: UInt8 = 32     // base64url
private let cSpace: UInt8 = 64   // space, tab, CR, LF
private let cAlnum: UInt8 = cDigit | cUpper | cLower

let charClass: [UInt8] = {
    var t = [UInt8](repeating: 0, count: 256)
    for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] |= cDigit | cHex | cLocal | cB64 }
    for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] |= cUpper | cLocal | cB64 }
    for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] |= cLower | cLocal | cB64 }
    for c in Array("abcdefABCDEF".utf8) { t[Int(c)] |= cHex }
    for c in Array("._%+-".utf8) { t[Int(c)] |= cLocal }
    for c in Array("_-".utf8) { t[Int(c)] |= cB64 }
    for c in Array(" \t\r\n".utf8) { t[Int(c)] |= cSpace }
    return t
}()

@inline(__always) private func isDigit(_ c: UInt8) -> Bool { c &- 48 < 10 }
@inline(__always) private func isUpper(_ c: UInt8) -> Bool { c &- 65 < 26 }
@inline(__always) private func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) &- 97 < 26 }
@inline(__always) private func isAlnum(_ c: UInt8) -> Bool { charClass[Int(c)] & cAlnum != 0 }
@inline(__always) private func isHex(_ c: UInt8) -> Bool { charClass[Int(c)] & cHex != 0 }
@inline(__always) private func isWord(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") }
@inline(__always) private func isB64(_ c: UInt8) -> Bool { charClass[Int(c)] & cB64 != 0 }
@inline(__always) func isSpaceByte(_ c: UInt8) -> Bool { charClass[Int(c)] & cSpace != 0 }

/// Triggers: what the prefilter table holds for a byte.
private let tNone: UInt8 = 0, tDigit: UInt8 = 1, tAt: UInt8 = 2, tColon: UInt8 = 3, tEquals: UInt8 = 4,
            tUnderscore: UInt8 = 5, tDash: UInt8 = 6, tUpperA: UInt8 = 7, tUpperJ: UInt8 = 8

/// IBAN length per country (ISO 13616 registry).
private let ibanLengths: [UInt16: Int] = {
    let table = """
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29
    ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28
    LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25
    QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30
    """
    var m: [UInt16: Int] = [:]
    for entry in table.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
        let u = Array(entry.utf8)
        m[UInt16(u[0]) << 8 | UInt16(u[1])] = Int(u[2] - 48) * 10 + Int(u[3] - 48)
    }
    return m
}()

struct RawDetection {
    var start: Int
    var end: Int
    var kind: BuiltinDetector
}

/// Reads bytes of one buffer for the matchers. Left of the buffer reads as a space (a stream puts
/// the bytes it already emitted at the buffer's start, as context); reading at or past the end returns 0 and
/// sets `touched`.
struct Probe {
    let p: UnsafeBufferPointer<UInt8>
    let n: Int
    var touched = false

    @inline(__always) mutating func b(_ j: Int) -> UInt8 {
        if j >= n { touched = true; return 0 }
        if j >= 0 { return p[j] }
        return 0x20
    }

    @inline(__always) mutating func matches(_ j: Int, _ lit: StaticString) -> Bool {
        var k = 0
        let s = lit.utf8Start
        while k < lit.utf8CodeUnitCount {
            if b(j + k) != s[k] { return false }
            k += 1
        }
        return true
    }

    @inline(__always) mutating func matchesLower(_ j: Int, _ lit: StaticString) -> Bool {
        var k = 0
        let s = lit.utf8Start
        while k < lit.utf8CodeUnitCount {
            if asciiLower(b(j + k)) != s[k] { return false }
            k += 1
        }
        return true
    }

    // MARK: boundaries

    /// A numeric value may not start in the middle of a word or of `a-1`, `v1.2`.
    mutating func leftOK(_ s: Int) -> Bool {
        let c = b(s - 1)
        if isAlnum(c) || c == UInt8(ascii: "_") { return false }
        if c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "/") {
            return !isAlnum(b(s - 2))
        }
        return true
    }

    /// ... nor end in the middle of one.
    mutating func rightOK(_ e: Int) -> Bool {
        let c = b(e)
        if isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "@") { return false }
        if c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "/") || c == UInt8(ascii: ",") {
            return !isDigit(b(e + 1))
        }
        return true
    }

    // MARK: numeric detectors

    mutating func ipv4(_ s: Int) -> Int? {
        var j = s
        for octet in 0..<4 {
            if octet > 0 {
                guard b(j) == UInt8(ascii: "."), isDigit(b(j + 1)) else { return nil }
                j += 1
            }
            var value = 0, len = 0
            while isDigit(b(j)) {
                value = value * 10 + Int(b(j) - 48); len += 1; j += 1
                if len > 3 { return nil }
            }
            if value > 255 || (len > 1 && b(j - len) == UInt8(ascii: "0")) { return nil }
        }
        if b(j) == UInt8(ascii: ".") && isDigit(b(j + 1)) { return nil }
        return rightOK(j) ? j : nil
    }

    mutating func ssn(_ s: Int) -> Int? {
        for k in [0, 1, 2, 4, 5, 7, 8, 9, 10] where !isDigit(b(s + k)) { return nil }
        guard b(s + 3) == UInt8(ascii: "-"), b(s + 6) == UInt8(ascii: "-"), rightOK(s + 11) else { return nil }
        func num(_ a: inout Probe, _ from: Int, _ len: Int) -> Int {
            var v = 0
            for k in 0..<len { v = v * 10 + Int(a.b(from + k) - 48) }
            return v
        }
        let area = num(&self, s, 3), group = num(&self, s + 4, 2), serial = num(&self, s + 7, 4)
        if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 { return nil }
        return s + 11
    }

    mutating func card(_ s: Int) -> Int? {
        // the groups after an IBAN's "DE89 " (one whose check digits failed) are not a card
        if b(s - 1) == UInt8(ascii: " ") && isDigit(b(s - 2)) && isDigit(b(s - 3)) && isUpper(b(s - 4)) && isUpper(b(s - 5)) {
            return nil
        }
        var digits = [UInt8](), j = s, sep: UInt8 = 0, group = 0, groups = 0, badGroup = false
        digits.reserveCapacity(20)
        while true {
            let c = b(j)
            if isDigit(c) {
                digits.append(c - 48); group += 1; j += 1
                if digits.count > 19 { return nil }
            } else if (c == UInt8(ascii: " ") || c == UInt8(ascii: "-")) && group > 0 && isDigit(b(j + 1))
                        && (sep == 0 || sep == c) {
                sep = c
                if group < 3 || group > 6 { badGroup = true }
                groups += 1; group = 0; j += 1
            } else {
                break
            }
        }
        if digits.count < 13 || badGroup || (groups > 0 && (group < 1 || group > 6)) { return nil }
        if digits[0] == 0 || digits[0] > 6 || (digits[0] == 1 && !(digits[1] == 8 && digits[2] == 0 && digits[3] == 0)) { return nil }
        guard rightOK(j) else { return nil }
        var sum = 0, double = false
        for d in digits.reversed() {
            var v = Int(d)
            if double { v *= 2; if v > 9 { v -= 9 } }
            sum += v; double.toggle()
        }
        return sum % 10 == 0 ? j : nil
    }

    mutating func phone(_ s: Int) -> Int? {
        var j = s
        let intl = b(j) == UInt8(ascii: "+")
        if intl { j += 1 }
        var groups = [Int](), seps = [UInt8](), digits = 0, parens = 0
        groups.reserveCapacity(8)
        while groups.count < 10 {
            if b(j) == UInt8(ascii: "(") {
                var k = j + 1, len = 0
                while isDigit(b(k)) { k += 1; len += 1 }
                guard len >= 1, len <= 5, b(k) == UInt8(ascii: ")") else { return nil }
                groups.append(len); digits += len; parens += 1; j = k + 1
                let c = b(j)
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "-") {
                    if isDigit(b(j + 1)) { seps.append(c); j += 1 } else { break }
                }
                if !isDigit(b(j)) { break }
                continue
            }
            var len = 0
            while isDigit(b(j)) { j += 1; len += 1 }
            if len == 0 { return nil }
            groups.append(len); digits += len
            let c = b(j)
            if (c == UInt8(ascii: " ") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")) && isDigit(b(j + 1)) {
                seps.append(c); j += 1
            } else if (c == UInt8(ascii: " ") || c == UInt8(ascii: "-")) && b(j + 1) == UInt8(ascii: "(") && intl {
                seps.append(c); j += 1
            } else if c == UInt8(ascii: "(") && intl {
                continue
            } else {
                break
            }
        }
        if digits < 7 || digits > 15 { return nil }
        // an extension: x123
        if b(j) == UInt8(ascii: "x") && isDigit(b(j + 1)) {
            var k = j + 1, len = 0
            while isDigit(b(k)) && len < 6 { k += 1; len += 1 }
            j = k
        }
        guard rightOK(j) else { return nil }
        let dots = seps.contains(UInt8(ascii: "."))
        if dots && (seps.contains { $0 != UInt8(ascii: ".") }) { return nil }
        // 00 is the international call prefix in most of the world
        if intl || (b(s) == UInt8(ascii: "0") && b(s + 1) == UInt8(ascii: "0") && b(s + 2) != UInt8(ascii: "0")
                    && groups[0] <= 5 && digits >= 9) { return j }
        // A bare run: a NANP number (area and exchange codes start with 2-9: not a Unix time) or a
        // national number with its trunk 0.
        if groups.count == 1 && parens == 0 {
            let g = groups[0]
            if g == 10 && b(s) >= UInt8(ascii: "2") && b(s + 3) >= UInt8(ascii: "2") { return j }
            if (g == 10 || g == 11) && b(s) == UInt8(ascii: "0") && b(s + 1) != UInt8(ascii: "0") { return j }
            return nil
        }
        // National forms: grouped, short groups; not a date, a range of years, an SSN shape,
        // a number with thousands separators or a dotted version.
        if groups.count < 2 { return nil }
        if dots && groups != [3, 3, 4] { return nil }
        // a national number with a trunk prefix (0...) may end in a long group: 04693 36916, (0118)4960828
        let trunk = b(s) == UInt8(ascii: "0") || (b(s) == UInt8(ascii: "(") && b(s + 1) == UInt8(ascii: "0"))
        for (k, g) in groups.enumerated() where g > (k == 0 ? 5 : k == groups.count - 1 && trunk ? 8 : 4) { return nil }
        if digits > 12 { return nil }
        if groups.count >= 3 && groups.allSatisfy({ $0 == 4 }) { return nil }   // card-like
        if parens == 0 {
            if groups.count >= 3 && groups.dropFirst().dropLast().contains(1) { return nil }
            if groups == [4, 2, 2] || groups == [2, 2, 4] || groups == [1, 2, 4] || groups == [2, 1, 4] || groups == [1, 1, 4] {
                return nil
            }
            if groups == [3, 2, 4] && seps.allSatisfy({ $0 == UInt8(ascii: "-") }) { return nil }
            if groups.count >= 2 && groups.dropFirst().allSatisfy({ $0 == 3 }) && groups[0] <= 3 { return nil }
            if groups == [4, 4] {
                let y1 = b(s), y2 = b(s + 5)
                if (y1 == 49 || y1 == 50) && (y2 == 49 || y2 == 50) { return nil }
            }
        }
        return j
    }

    mutating func iban(_ s: Int) -> Int? {
        guard let length = ibanLengths[UInt16(b(s)) << 8 | UInt16(b(s + 1))] else { return nil }
        var chars = [UInt8](), j = s
        chars.reserveCapacity(34)
        while chars.count < length {
            let c = b(j)
            if isDigit(c) || isUpper(c) {
                chars.append(c); j += 1
            } else if c == UInt8(ascii: " ") && chars.count % 4 == 0 && isAlnum(b(j + 1)) {
                j += 1
            } else {
                return nil
            }
        }
        guard !isAlnum(b(j)), b(j) != UInt8(ascii: "@") else { return nil }
        var rem = 0
        for c in chars[4...] + chars[..<4] {
            if isDigit(c) {
                rem = (rem * 10 + Int(c - 48)) % 97
            } else {
                rem = (rem * 100 + Int(c - 55)) % 97
            }
        }
        return rem == 1 ? j : nil
    }

    // MARK: e-mail and IPv6 (look back from the trigger)

    mutating func email(_ at: Int, floor: Int) -> (Int, Int)? {
        var s = at
        while s > floor && charClass[Int(p[s - 1])] & cLocal != 0 && at - s < 64 { s -= 1 }
        if s == at || charClass[Int(b(s - 1))] & cLocal != 0 { return nil }
        if b(s) == UInt8(ascii: ".") || b(at - 1) == UInt8(ascii: ".") { return nil }
        var j = at + 1, labels = 0, lastStart = j
        while true {
            let labelStart = j
            while isAlnum(b(j)) || b(j) == UInt8(ascii: "-") { j += 1 }
            let len = j - labelStart
            if len == 0 || len > 63 || b(labelStart) == UInt8(ascii: "-") || b(j - 1) == UInt8(ascii: "-") { return nil }
            labels += 1; lastStart = labelStart
            if b(j) == UInt8(ascii: ".") && isAlnum(b(j + 1)) { j += 1 } else { break }
        }
        if labels < 2 || j - at > 254 || b(j) == UInt8(ascii: "@") { return nil }
        var tld = ""
        for k in lastStart..<j { tld.unicodeScalars.append(Unicode.Scalar(asciiLower(p[k]))) }
        return TopLevelDomains.all.contains(tld) ? (s, j) : nil
    }

    mutating func ipv6(_ colon: Int, floor: Int) -> (Int, Int)? {
        var s = colon
        while s > floor && isHex(p[s - 1]) && colon - s < 4 { s -= 1 }
        let c = b(s - 1)
        if isAlnum(c) || c == UInt8(ascii: ":") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") { return nil }
        var j = s
        while isHex(b(j)) || b(j) == UInt8(ascii: ":") || b(j) == UInt8(ascii: ".") {
            j += 1
            if j - s > 45 { return nil }
        }
        if isAlnum(b(j)) || b(j) == UInt8(ascii: "_") { return nil }
        var e = j
        while e > s && p[e - 1] == UInt8(ascii: ".") { e -= 1 }
        return IPv6Syntax.isValid(p, s, e) ? (s, e) : nil
    }

    // MARK: secrets

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

/// The scanner for one configuration.
struct BuiltinScanner: Sendable {
    let table: [UInt8]
    let enabled: Set<BuiltinDetector>

    init(_ enabled: Set<BuiltinDetector>) {
        self.enabled = enabled
        var t = [UInt8](repeating: tNone, count: 256)
        let numeric: Set<BuiltinDetector> = [.creditCard, .iban, .usSSN, .phone, .ipAddress]
        if !enabled.isDisjoint(with: numeric) {
            for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = tDigit }
        }
        if enabled.contains(.email) { t[Int(UInt8(ascii: "@"))] = tAt }
        if enabled.contains(.ipAddress) || enabled.contains(.secretToken) { t[Int(UInt8(ascii: ":"))] = tColon }
        if enabled.contains(.secretToken) {
            t[Int(UInt8(ascii: "="))] = tEquals
            t[Int(UInt8(ascii: "_"))] = tUnderscore
        }
        if enabled.contains(.secretToken) || enabled.contains(.privateKey) { t[Int(UInt8(ascii: "-"))] = tDash }
        if enabled.contains(.secretToken) || enabled.contains(.awsAccessKey) { t[Int(UInt8(ascii: "A"))] = tUpperA }
        if enabled.contains(.jwt) { t[Int(UInt8(ascii: "J"))] = tUpperJ }
        table = t
    }

    /// Scans `p` from `start` (what is before it is context only) and appends what it finds. Returns the index up to which everything is decided:
    /// `p.count` when `final`, else the first byte that could still belong to a value.
    func scan(_ p: UnsafeBufferPointer<UInt8>, from start: Int, final: Bool, into out: inout [RawDetection]) -> Int {
        let n = p.count
        var probe = Probe(p: p, n: n)
        var i = start, floor = start
        var pending: Int? = nil
        table.withUnsafeBufferPointer { table in
            while i < n {
                // the prefilter: most bytes stop here
                var t = table[Int(p[i])]
                while t == tNone {
                    i += 1
                    if i == n { return }
                    t = table[Int(p[i])]
                }
                probe.touched = false
                var hit: (Int, Int, BuiltinDetector)? = nil
                var skipTo = i + 1
                switch t {
                case tDigit:
                    hit = digitAt(i, &probe)
                    if hit == nil && !probe.touched {
                        // a failed number is not retried from its inner groups ("4111 1111 1111 1112"
                        // is not the phone "1111 1111 1112"), nor are an IBAN's groups
                        skipTo = numericChainEnd(i, &probe)
                        if skipTo >= n && !final && n - i < 1024 {
                            pending = max(floor, i - 66)   // the rest of the chain comes next
                            return
                        }
                    }
                case tAt:
                    if let r = probe.email(i, floor: floor) { hit = (r.0, r.1, .email) }
                case tColon:
                    if enabled.contains(.secretToken), let r = probe.authorization(i) {
                        hit = (r.0, r.1, .secretToken)
                    } else if enabled.contains(.ipAddress), let r = probe.ipv6(i, floor: floor) {
                        hit = (r.0, r.1, .ipAddress)
                    }
                case tEquals:
                    if let r = probe.keyValue(i, floor: floor) { hit = (r.0, r.1, .secretToken) }
                case tUnderscore:
                    if let r = probe.underscoreToken(i) { hit = (r.0, r.1, .secretToken) }
                case tDash:
                    if let r = probe.dashToken(i) {
                        let kind: BuiltinDetector = p[i + 1] == UInt8(ascii: "-") ? .privateKey : .secretToken
                        if enabled.contains(kind) { hit = (r.0, r.1, kind) }
                    }
                case tUpperA:
                    if let r = probe.upperA(i), enabled.contains(r.2) { hit = r }
                default:
                    if let r = probe.jwt(i) { hit = (r.0, r.1, .jwt) }
                }
                if probe.touched && !final {
                    // Keep what this trigger and any later one may look back at (65 bytes at most).
                    pending = max(floor, i - 66)
                    return
                }
                if let h = hit, h.0 >= floor {
                    out.append(RawDetection(start: h.0, end: h.1, kind: h.2))
                    floor = h.1
                    i = h.1
                } else {
                    i = skipTo
                }
            }
        }
        if final { return n }
        // Keep the trailing word (at most 64 bytes): a value may start there and go on in the next chunk.
        var tail = n
        while tail > floor && n - tail < 64 && !isSpaceByte(p[tail - 1]) { tail -= 1 }
        return min(pending ?? n, tail)
    }

    /// The end of the digit groups from `i` on (single separators, alnum groups when an IBAN's
    /// country code is right before `i`), within the bytes there are.
    private func numericChainEnd(_ i: Int, _ probe: inout Probe) -> Int {
        let ibanLike = isUpper(probe.b(i - 1)) && isUpper(probe.b(i - 2))
        var j = i
        while j < probe.n {
            let c = probe.p[j]
            if isDigit(c) || (ibanLike && isUpper(c)) {
                j += 1
            } else if (c == UInt8(ascii: " ") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")) && j + 1 < probe.n
                        && (isDigit(probe.p[j + 1]) || (ibanLike && isUpper(probe.p[j + 1]))) {
                j += 1
            } else {
                // a separator as the last byte: the chain may go on in the next chunk
                if j == probe.n - 1 && (c == UInt8(ascii: " ") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")) { j += 1 }
                break
            }
        }
        return j
    }

    @inline(__always) private func digitAt(_ i: Int, _ probe: inout Probe) -> (Int, Int, BuiltinDetector)? {
        let prev = probe.b(i - 1)
        if isDigit(prev) { return nil }
        if isUpper(prev) {
            guard enabled.contains(.iban), isUpper(probe.b(i - 2)), isDigit(probe.b(i + 1)), !isAlnum(probe.b(i - 3)) else { return nil }
            if let e = probe.iban(i - 2) { return (i - 2, e, .iban) }
            return nil
        }
        if isAlpha(prev) || !probe.leftOK(i) { return nil }
        if prev == UInt8(ascii: "+") || prev == UInt8(ascii: "(") {
            guard enabled.contains(.phone), !isAlnum(probe.b(i - 2)), let e = probe.phone(i - 1) else { return nil }
            return (i - 1, e, .phone)
        }
        if enabled.contains(.ipAddress), let e = probe.ipv4(i) { return (i, e, .ipAddress) }
        if enabled.contains(.usSSN), let e = probe.ssn(i) { return (i, e, .usSSN) }
        if enabled.contains(.creditCard), let e = probe.card(i) { return (i, e, .creditCard) }
        if enabled.contains(.phone), let e = probe.phone(i) { return (i, e, .phone) }
        return nil
    }
}

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
