// E-mail addresses and IPv6: found from their trigger (`@`, `:`) by looking back.

extension Probe {

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
}
