import Crypto

/// Keyed, stable tokens for the `hash` strategy: the first 4 bytes of HMAC-SHA256(key, value) in hex.
enum KeyedHash {
    static func token(key: SymmetricKey, value: some Sequence<UInt8>) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(value), using: key)
        var hex = ""
        for byte in mac.prefix(4) {
            let digits = Array("0123456789abcdef".utf8)
            hex.unicodeScalars.append(Unicode.Scalar(digits[Int(byte >> 4)]))
            hex.unicodeScalars.append(Unicode.Scalar(digits[Int(byte & 0xf)]))
        }
        return hex
    }
}
