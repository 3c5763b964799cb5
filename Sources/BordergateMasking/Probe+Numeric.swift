// The numeric detectors: IPv4, US SSNs, cards (Luhn), phones, IBANs (mod-97).

/// IBAN length per country (ISO 13616 registry).
let ibanLengths: [UInt16: Int] = {
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

extension Probe {

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
}
