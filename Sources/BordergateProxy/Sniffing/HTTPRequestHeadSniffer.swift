/// Reads an HTTP/1.0 or HTTP/1.1 request head (RFC 9112 §2–§5) far enough to name the host.
///
/// Lines end in LF with an optional CR before it (RFC 9112 §2.2 lets a recipient accept a bare LF);
/// the head ends at the first empty line. Only the request line and the field lines are read;
/// nothing after the head is looked at.
enum HTTPRequestHeadSniffer {
    /// Methods recognised from the first bytes; each must be followed by one space.
    static let methods: [[UInt8]] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        // WebDAV and friends.
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
    ].map { Array($0.utf8) }

    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let cr = UInt8(ascii: "\r")
    static let lf = UInt8(ascii: "\n")
    static let colon = UInt8(ascii: ":")

    /// `bytes` starts with an upper-case letter and holds at most `ProtocolSniffer.maximumHeadBytes` bytes.
    static func sniff(_ bytes: [UInt8]) -> SniffedProtocol {
        var progress = Progress()
        return progress.advance(bytes)
    }

    /// How far the head has been read, so that bytes arriving later are looked at once: each
    /// ``advance(_:)`` is given everything received so far (the earlier bytes unchanged) and
    /// resumes at the line it stopped in. The answer is the one ``sniff(_:)`` would give.
    struct Progress {
        private var head: HeadState?
        /// Where the line being read starts.
        private var lineStart = 0
        /// The search for the line's LF resumes here.
        private var searchFrom = 0
        /// The request line's bytes before this have been found plausible.
        private var plausibleFrom = 0
        /// Bytes looked at, over every call (for tests that bound the work).
        private(set) var examined = 0

        mutating func advance(_ bytes: [UInt8]) -> SniffedProtocol {
            if head == nil {
                // The method decides HTTP or not from as few bytes as it can.
                var method: [UInt8]?
                var couldStillMatch = false
                for candidate in methods {
                    let withSpace = candidate + [space]
                    if bytes.count >= withSpace.count {
                        if bytes.starts(with: withSpace) { method = candidate; break }
                    } else if withSpace.starts(with: bytes) {
                        couldStillMatch = true
                    }
                }
                examined += min(bytes.count, 10)
                guard let method else { return couldStillMatch ? .needMoreBytes : .other }
                head = HeadState(method: method)
                plausibleFrom = method.count + 1
            }
            guard var head else { return .needMoreBytes }
            defer { self.head = head }

            while true {
                guard let lineFeed = bytes[searchFrom...].firstIndex(of: lf) else {
                    examined += bytes.count - searchFrom
                    searchFrom = bytes.count
                    if lineStart == 0 {
                        guard requestLineBytesPlausible(bytes[plausibleFrom...]) else { return .other }
                        examined += bytes.count - plausibleFrom
                        // A CR is plausible only as the last byte: look at it again when more come.
                        plausibleFrom = max(plausibleFrom, bytes.last == cr ? bytes.count - 1 : bytes.count)
                    }
                    if bytes.count >= ProtocolSniffer.maximumHeadBytes { return .malformed("request head over 16 KiB") }
                    return .needMoreBytes
                }
                examined += lineFeed + 1 - searchFrom
                var lineEnd = lineFeed
                if lineEnd > lineStart, bytes[lineEnd - 1] == cr { lineEnd -= 1 }
                let line = bytes[lineStart..<lineEnd]
                examined += line.count
                if lineStart == 0 {
                    if let answer = head.readRequestLine(line) { return answer }
                } else if line.isEmpty {
                    return head.finish()
                } else if let answer = head.readFieldLine(line) {
                    return answer
                }
                lineStart = lineFeed + 1
                searchFrom = lineStart
            }
        }
    }

    /// Whether the start of a request line, after the method and its space, can still become
    /// `target SP HTTP-version`: visible ASCII and spaces, a CR only at the very end.
    static func requestLineBytesPlausible(_ bytes: ArraySlice<UInt8>) -> Bool {
        for index in bytes.indices {
            let byte = bytes[index]
            if byte == space || (0x21...0x7E).contains(byte) { continue }
            if byte == cr, index == bytes.index(before: bytes.endIndex) { continue }
            return false
        }
        return true
    }

    struct HeadState {
        let method: [UInt8]
        var target: ArraySlice<UInt8> = []
        var hostField: ArraySlice<UInt8>?

        init(method: [UInt8]) { self.method = method }

        /// Nil to go on; else the answer. The line has its line ending removed.
        mutating func readRequestLine(_ line: ArraySlice<UInt8>) -> SniffedProtocol? {
            let rest = line.dropFirst(method.count + 1)
            guard requestLineBytesPlausible(rest) else { return .other }
            let version = rest.suffix(9)
            guard version.elementsEqual(" HTTP/1.1".utf8) || version.elementsEqual(" HTTP/1.0".utf8) else {
                return .other
            }
            let target = rest.dropLast(9)
            guard !target.isEmpty, !target.contains(space) else { return .malformed("bad request line") }
            self.target = ArraySlice(Array(target)) // a copy: a slice would keep the growing input shared
            return nil
        }

        /// Nil to go on; else the answer.
        mutating func readFieldLine(_ line: ArraySlice<UInt8>) -> SniffedProtocol? {
            guard let first = line.first, first != space, first != tab else {
                return .malformed("obsolete line folding")
            }
            guard let colonIndex = line.firstIndex(of: colon) else { return .malformed("header line without colon") }
            let name = line[..<colonIndex]
            guard !name.isEmpty, name.allSatisfy(isTokenCharacter) else { return .malformed("bad header name") }
            let value = trimmed(line[(colonIndex + 1)...])
            guard !value.contains(where: isForbiddenInValue) else { return .malformed("control character in header") }
            if name.elementsEqual("host".utf8, by: { asciiLowercased($0) == $1 }) {
                if let previous = hostField {
                    guard previous.elementsEqual(value, by: { asciiLowercased($0) == asciiLowercased($1) }) else {
                        return .malformed("two different Host headers")
                    }
                }
                hostField = ArraySlice(Array(value))
            }
            return nil
        }

        func finish() -> SniffedProtocol {
            var host: String?
            if let hostField, !hostField.isEmpty {
                guard let fromField = authorityHost(hostField) else { return .malformed("bad Host header") }
                host = fromField
            }
            let methodName = String(decoding: method, as: UTF8.self)
            let targetText = String(decoding: target, as: UTF8.self)
            switch targetHost() {
            case .success(let fromTarget?): host = fromTarget
            case .success(nil): break
            case .failure(let problem): return .malformed(problem.reason)
            }
            return .http(host: host, method: methodName, target: targetText)
        }

        struct Problem: Error { let reason: String }

        /// The host named by the request target: from authority form (CONNECT) and absolute form,
        /// which win over the Host header (RFC 9112 §3.2.2); nil for origin and asterisk form.
        func targetHost() -> Result<String?, Problem> {
            if method.elementsEqual("CONNECT".utf8) {
                guard let host = authorityHost(target) else { return .failure(Problem(reason: "bad CONNECT target")) }
                return .success(host)
            }
            if target.first == UInt8(ascii: "/") { return .success(nil) }
            if target.elementsEqual("*".utf8), method.elementsEqual("OPTIONS".utf8) { return .success(nil) }
            // Absolute form: scheme "://" authority [ path-abempty ] [ "?" query ].
            guard let schemeEnd = target.firstIndex(of: colon),
                  let schemeFirst = target.first, isASCIILetter(schemeFirst),
                  target[..<schemeEnd].allSatisfy({ isASCIILetter($0) || isDigit($0) || "+-.".utf8.contains($0) }),
                  target[schemeEnd...].starts(with: "://".utf8) else {
                return .failure(Problem(reason: "bad request target"))
            }
            let authorityStart = schemeEnd + 3
            let authorityEnd = target[authorityStart...].firstIndex(where: { "/?#".utf8.contains($0) }) ?? target.endIndex
            let authority = target[authorityStart..<authorityEnd]
            guard !authority.contains(UInt8(ascii: "@")) else {
                return .failure(Problem(reason: "userinfo in request target"))
            }
            guard let host = authorityHost(authority) else { return .failure(Problem(reason: "bad host in request target")) }
            return .success(host)
        }
    }

    /// The host of `host [":" port]` or `"[" IPv6 "]" [":" port]`, lower-cased, without port or
    /// brackets; nil if it is not one.
    static func authorityHost(_ authority: ArraySlice<UInt8>) -> String? {
        let host: String?
        let portPart: ArraySlice<UInt8>
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            host = SniffedHostname.normalizeIPv6(authority[(authority.startIndex + 1)..<close])
            portPart = authority[(close + 1)...]
        } else if let colonIndex = authority.firstIndex(of: colon) {
            host = SniffedHostname.normalize(authority[..<colonIndex])
            portPart = authority[colonIndex...]
        } else {
            host = SniffedHostname.normalize(authority)
            portPart = []
        }
        if let first = portPart.first {
            let digits = portPart.dropFirst()
            guard first == colon, digits.count <= 5, digits.allSatisfy(isDigit) else { return nil }
        }
        return host
    }

    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let isBlank = { (byte: UInt8) in byte == space || byte == tab }
        guard let first = bytes.firstIndex(where: { !isBlank($0) }),
              let last = bytes.lastIndex(where: { !isBlank($0) }) else { return [] }
        return bytes[first...last]
    }

    static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
    }

    static func isASCIILetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(asciiLowercased(byte))
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// RFC 9110 §5.6.2 tchar.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        isASCIILetter(byte) || isDigit(byte) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
    }

    /// Field values hold visible characters, spaces, tabs and obs-text, never CR, LF, NUL or
    /// other controls (RFC 9110 §5.5).
    static func isForbiddenInValue(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != tab) || byte == 0x7F
    }
}
