import Foundation
import NIOHTTP1

/// The names a request gives its destination, and what events may say of its target.
extension HTTPRelay {
    /// The hosts a request names, each to be decided: the absolute-form target's authority and
    /// the Host header, lowercased, without port, brackets or a trailing dot. A request whose Host
    /// is repeated or malformed is refused: a server might route by a name other than the one decided.
    static func hosts(of head: HTTPRequestHead) -> Result<[String], BadHost> {
        var out: [String] = []
        if let scheme = head.uri.range(of: "://"), isScheme(head.uri[..<scheme.lowerBound]) {
            let authority = head.uri[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            guard let h = hostName(authority) else { return .failure(BadHost(why: "the request target's host is not a valid name")) }
            out.append(h)
        }
        let values = head.headers["host"]
        guard values.count <= 1 else { return .failure(BadHost(why: "the request has \(values.count) Host headers; expected one")) }
        if let value = values.first {
            guard let h = hostName(Substring(value)) else { return .failure(BadHost(why: "the Host header is not a valid host name")) }
            if !out.contains(h) { out.append(h) }
        }
        return .success(out)
    }

    struct BadHost: Error { let why: String }

    static func isScheme(_ s: Substring) -> Bool {
        guard let first = s.first, first.isASCII, first.isLetter else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
    }

    /// `name`, `name:port`, `1.2.3.4:port`, `[v6]:port` → the name; anything else (user info,
    /// lists, spaces) → nil.
    static func hostName(_ raw: Substring) -> String? {
        var a = raw.trimmingCharacters(in: .whitespaces)[...]
        if a.hasPrefix("[") {
            guard let close = a.firstIndex(of: "]") else { return nil }
            let rest = a[a.index(after: close)...]
            guard rest.isEmpty || (rest.first == ":" && rest.dropFirst().allSatisfy(\.isNumber)) else { return nil }
            let v6 = a[a.index(after: a.startIndex)..<close]
            guard !v6.isEmpty, v6.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
            return v6.lowercased()
        }
        if let colon = a.firstIndex(of: ":") {
            let port = a[a.index(after: colon)...]
            guard port.allSatisfy(\.isNumber) else { return nil }
            a = a[..<colon]
        }
        if a.hasSuffix(".") { a = a.dropLast() }
        guard !a.isEmpty, a.count <= 253,
              a.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") }) else { return nil }
        return a.lowercased()
    }

    /// A target without its query or fragment, for events (a query often carries tokens).
    static func path(of target: String) -> String {
        String(target.prefix { $0 != "?" && $0 != "#" })
    }
}
