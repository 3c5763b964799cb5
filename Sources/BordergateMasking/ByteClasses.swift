// Byte classes and prefilter triggers shared by the built-in detectors (see Probe.swift).

/// Character classes.
let cDigit: UInt8 = 1, cUpper: UInt8 = 2, cLower: UInt8 = 4, cHex: UInt8 = 8
let cLocal: UInt8 = 16   // e-mail local part
let cB64: UInt8 = 32     // base64url
let cSpace: UInt8 = 64   // space, tab, CR, LF
let cAlnum: UInt8 = cDigit | cUpper | cLower

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

@inline(__always) func isDigit(_ c: UInt8) -> Bool { c &- 48 < 10 }
@inline(__always) func isUpper(_ c: UInt8) -> Bool { c &- 65 < 26 }
@inline(__always) func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) &- 97 < 26 }
@inline(__always) func isAlnum(_ c: UInt8) -> Bool { charClass[Int(c)] & cAlnum != 0 }
@inline(__always) func isHex(_ c: UInt8) -> Bool { charClass[Int(c)] & cHex != 0 }
@inline(__always) func isWord(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") }
@inline(__always) func isB64(_ c: UInt8) -> Bool { charClass[Int(c)] & cB64 != 0 }
@inline(__always) func isSpaceByte(_ c: UInt8) -> Bool { charClass[Int(c)] & cSpace != 0 }

/// Triggers: what the prefilter table holds for a byte.
let tNone: UInt8 = 0, tDigit: UInt8 = 1, tAt: UInt8 = 2, tColon: UInt8 = 3, tEquals: UInt8 = 4,
            tUnderscore: UInt8 = 5, tDash: UInt8 = 6, tUpperA: UInt8 = 7, tUpperJ: UInt8 = 8
