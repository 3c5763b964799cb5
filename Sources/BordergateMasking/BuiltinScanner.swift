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
                            pending = wordStart(max(floor, i - 66), floor: floor, p)   // the rest of the chain comes next
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
                    pending = wordStart(max(floor, i - 66), floor: floor, p)
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
        return chainStart(min(pending ?? n, tail), floor: floor, p)
    }

    /// `at`, moved back to the start of the word it is inside of (at most 64 bytes): the scan that
    /// resumes there must see a key (`password=`) or an address's local part whole, as a scan of
    /// the whole body does, since no probe looks back past where a scan began.
    private func wordStart(_ at: Int, floor: Int, _ p: UnsafeBufferPointer<UInt8>) -> Int {
        var k = at
        while k > floor && at - k < 64 {
            let c = p[k - 1]
            guard isAlnum(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
                    || c == UInt8(ascii: "+") || c == UInt8(ascii: "%") else { break }
            k -= 1
        }
        return k
    }

    /// `at`, moved back to the start of the digit (and capital letter) groups it is inside of:
    /// the next scan starts there, as a scan of the whole body would have met the chain (a failed
    /// IBAN's or card's inner groups are not retried as a phone). At most 1 KiB back.
    private func chainStart(_ at: Int, floor: Int, _ p: UnsafeBufferPointer<UInt8>) -> Int {
        @inline(__always) func chainByte(_ c: UInt8) -> Bool { isDigit(c) || isUpper(c) }
        var k = at
        while k > floor && at - k < 1024 {
            let c = p[k - 1]
            if chainByte(c) {
                k -= 1
            } else if (c == UInt8(ascii: " ") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")) && k - 2 >= floor
                        && chainByte(p[k - 2]) && k < p.count && chainByte(p[k]) {
                k -= 1
            } else {
                break
            }
        }
        return k
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
