import BordergateMasking

let engine = MaskingEngine(MaskingConfiguration(hashKey: Array("test key".utf8)))

/// The values `engine` finds in `text`, as (detector, text) pairs.
func found(_ text: String, _ e: MaskingEngine = engine) -> [(String, String)] {
    let bytes = Array(text.utf8)
    return e.detect(bytes).map { ($0.detector, String(decoding: bytes[$0.range], as: UTF8.self)) }
}

/// The detector that finds exactly `value` in `text`, if one does.
func detector(of value: String, in text: String) -> String? {
    found(text).first { $0.1 == value }?.0
}

/// A deterministic generator for property tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
