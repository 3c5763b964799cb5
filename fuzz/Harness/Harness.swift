import BordergateMasking
import BordergatePolicy
import BordergateRegions
import BordergateSniffing
@testable import BordergatePGFraming
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The parser this process fuzzes, from FUZZ_TARGET (scripts/fuzz sets it).
enum Target: String, CaseIterable {
    case mmdb, compiled, csv, json, tls, http, config, masking, postgresql
    case maskingExact = "masking-exact"
}

let target: Target = {
    guard let name = getenv("FUZZ_TARGET").map({ String(cString: $0) }), let t = Target(rawValue: name) else {
        print("bordergate-fuzz: set FUZZ_TARGET to one of \(Target.allCases.map(\.rawValue).joined(separator: ", "))")
        exit(2)
    }
    return t
}()

/// Every reader either returns tables or throws one `RegionTableError`; anything else (a trap,
/// an allocation past libFuzzer's -malloc_limit_mb, a hang past -timeout) is a finding.
/// Tables that were read must survive the compiled form unchanged.
func readTables(_ bytes: [UInt8], _ format: RegionTableFormat) {
    let tables: [RegionTable]
    do {
        tables = try RegionTableReader.read(bytes: bytes, path: "fuzz", format: format)
    } catch let e as RegionTableError {
        check(isOneLine(e.description), "a multi-line error: \(e)")
        return
    } catch {
        fatalError("not a RegionTableError: \(error)")
    }
    let compiled = CompiledRegionTables.encode(tables)
    guard let back = try? CompiledRegionTables.decode(compiled, path: "fuzz") else {
        fatalError("tables read from \(format) do not decode from their compiled form")
    }
    check(back.count == tables.count)
    for (a, b) in zip(tables, back) {
        check(a.name == b.name && Set(a.entries) == Set(b.entries), "the compiled form of \(format) tables differs")
    }
}

/// No CR or LF byte (`contains("\n")` would miss a CRLF, which is one Character).
func isOneLine(_ s: String) -> Bool { !s.utf8.contains(10) && !s.utf8.contains(13) }

/// Like `precondition`, but keeps its message in optimised builds (the finding's log shows it).
func check(_ condition: Bool, _ message: @autoclosure () -> String = "") {
    if !condition { fatalError(message()) }
}

/// FNV-1a 64, as the compiled format's checksum.
func fnv1a64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// A compiled table with its magic, version, length and checksum made right (unless the first
/// byte is 0), so mutations reach the structure behind the checksum.
func fixedCompiledHeader(_ input: [UInt8]) -> [UInt8] {
    guard input.count >= 32, input[0] != 0 else { return input }
    var bytes = input
    bytes.replaceSubrange(0..<8, with: CompiledRegionTables.magic)
    withUnsafeBytes(of: CompiledRegionTables.version.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
    withUnsafeBytes(of: UInt64(bytes.count - 32).littleEndian) { bytes.replaceSubrange(16..<24, with: $0) }
    withUnsafeBytes(of: fnv1a64(bytes[32...]).littleEndian) { bytes.replaceSubrange(24..<32, with: $0) }
    return bytes
}

/// A sniffer that has decided must not change its mind when more bytes arrive (the proxy calls
/// it again as they do), and must decide once it has its maximum.
func sniff(_ bytes: [UInt8]) {
    let verdict = ProtocolSniffer.sniff(bytes)
    if bytes.count >= ProtocolSniffer.maximumHeadBytes {
        check(verdict != .needMoreBytes, "undecided after \(bytes.count) bytes")
    }
    if verdict != .needMoreBytes {
        let more = ProtocolSniffer.sniff(bytes + [0x0A, 0x41])
        // A refusal may name another reason once more bytes show more of what is wrong.
        if case .malformed = verdict, case .malformed = more { return }
        check(more == verdict, "decided \(verdict), then \(more) with more bytes")
    }
}

/// The PostgreSQL framer, fed the input cut where its first byte says, both as a client's stream
/// (untyped first messages) and a server's: it yields messages, waits, or throws one line; the
/// messages re-framed are the bytes it consumed, and nothing is allocated by a length it read.
func frame(_ input: [UInt8]) {
    guard let first = input.first else { return }
    let bytes = Array(input.dropFirst())
    let step = Int(first % 61) + 1
    for frontend in [true, false] {
        var untyped = frontend
        var buffer = ByteBuffer()
        var consumed: [UInt8] = []
        var i = 0
        do {
            while i < bytes.count {
                buffer.writeBytes(bytes[i..<min(bytes.count, i + step)])
                i += step
                while let f = try PGMessageDecoder.next(from: &buffer, untyped: &untyped, side: "the peer") {
                    consumed += Array(f.encoded(allocator: ByteBufferAllocator()).readableBytesView)
                    _ = PGMessages.fields(of: f.body)
                }
            }
            check(consumed == Array(bytes.prefix(consumed.count)), "re-framed messages differ from the bytes consumed")
        } catch {
            check(isOneLine("\(error)"), "a multi-line error: \(error)")
        }
    }
}

/// Every detector, and a JSON key rule, for the masking target.
let fuzzEngine = MaskingEngine(MaskingConfiguration(fields: ["password", "*_token"], hashKey: Array(repeating: 7, count: 32)))

/// The streams must never trap and never add or remove a line break, wherever the body is cut
/// (the first byte picks the chunk size); with `exact`, they must also give exactly what masking
/// the whole body at once gives (not yet so: see README, "Fuzzing").
func mask(_ input: [UInt8], exact: Bool) {
    guard let first = input.first else { return }
    let body = Array(input.dropFirst())
    let whole = fuzzEngine.mask(body)
    let step = Int(first % 61) + 1
    let lines = { (b: [UInt8]) in b.lazy.filter { $0 == 10 }.count }
    var stream = fuzzEngine.makeStream()
    var out: [UInt8] = []
    var i = 0
    while i < body.count {
        out += stream.feed(body[i..<min(i + step, body.count)])
        i += step
    }
    out += stream.finish()
    if exact {
        check(out == whole.bytes, "the stream cut every \(step) bytes differs from masking the whole body")
        check(stream.counts == whole.counts, "the stream's counts differ")
    }
    check(lines(out) == lines(body), "the stream changed the number of line breaks")
    check(lines(whole.bytes) == lines(body), "masking changed the number of line breaks")
    // The JSON stream must not trap or lose line breaks on any input either.
    var json = fuzzEngine.makeJSONStream()
    var jout: [UInt8] = []
    i = 0
    while i < body.count {
        jout += json.feed(body[i..<min(i + step, body.count)])
        i += step
    }
    jout += json.finish()
    check(lines(jout) == lines(body), "JSON masking changed the number of line breaks")
    if exact {
        var once = fuzzEngine.makeJSONStream()
        let jwhole = once.feed(body) + once.finish()
        check(jout == jwhole, "the JSON stream cut every \(step) bytes differs from the JSON stream fed the whole body")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    switch target {
    case .mmdb:
        readTables(bytes, .mmdb)
    case .compiled:
        readTables(fixedCompiledHeader(bytes), .compiled)
    case .csv:
        // The first byte picks the flavour; detection runs on the rest as on any file.
        guard let first = bytes.first else { return 0 }
        let text = Array(bytes.dropFirst())
        _ = RegionTableFormat.detect(path: "fuzz", bytes: text)
        readTables(text, first & 1 == 0 ? .cidrCSV : .rangeCSV)
    case .json:
        guard let first = bytes.first else { return 0 }
        let text = Array(bytes.dropFirst())
        _ = RegionTableFormat.detect(path: "fuzz", bytes: text)
        readTables(text, [RegionTableFormat.aws, .gcp, .azure, .oracle][Int(first & 3)])
    case .tls:
        sniff([0x16] + bytes)
    case .http:
        sniff(bytes)
    case .config:
        do {
            _ = try ConfigParser.parse(String(decoding: bytes, as: UTF8.self), path: "fuzz.yaml")
        } catch let e as ConfigError {
            check(isOneLine(e.description), "a multi-line error: \(e)")
        } catch {
            fatalError("not a ConfigError: \(error)")
        }
    case .postgresql:
        frame(bytes)
    case .masking:
        mask(bytes, exact: false)
    case .maskingExact:
        mask(bytes, exact: true)
    }
    return 0
}
