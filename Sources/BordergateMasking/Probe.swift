// The built-in detectors: one pass over the bytes, a 256-entry table that skips every byte which
// cannot be the trigger of a value (for most text: nearly all of them), and at each trigger a small
// hand-written matcher that also validates what it matched (Luhn, mod-97, TLD, ...).
//
// Streaming without per-detector logic: a matcher reads bytes through `Probe.b`, which records when
// it reads past the end of the buffer. A decision that needed a byte we do not have yet is not a
// decision: the scanner stops there and the stream keeps the bytes from the trigger's look-back on.

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
}
