import Foundation
import Testing
@testable import BordergateAudit

@Suite struct AuditValuesTests {
    /// The released words: the JSON never changes.
    static let verdicts: [(Verdict, String)] = [(.redirect, "redirect"), (.pass, "pass"), (.deny, "deny"), (.audit, "audit"),
                                                (.grant, "grant"), (.grantExpired, "grant-expired"), (.error, "error")]
    static let endings: [(ConnectionEnding, String)] = [
        (.closedBy(.client), "closed by client"), (.closedBy(.server), "closed by server"),
        (.resetBy(.client), "reset by client"), (.resetBy(.server), "reset by server"),
        (.upstreamFailed, "upstream-failed"), (.proxyError, "proxy-error"), (.proxyStopped, "proxy stopped")]
    static let protocols: [(WireProtocol, String)] = [(.tcp, "tcp"), (.udp, "udp"), (.tls, "tls"), (.http, "http")]

    @Test func rawValuesAreTheReleasedWords() {
        for (v, s) in Self.verdicts { #expect(v.rawValue == s && Verdict(rawValue: s) == v) }
        for (e, s) in Self.endings { #expect(e.rawValue == s && ConnectionEnding(rawValue: s) == e) }
        for (p, s) in Self.protocols { #expect(p.rawValue == s && WireProtocol(rawValue: s) == p) }
        #expect(Verdict.known.count == Self.verdicts.count)
    }

    @Test func wordsFromAnotherVersionStillDecode() throws {
        let line = #"{"time":"2026-11-21T19:06:21.123456Z","id":"x","type":"close","verdict":"quarantine","protocol":"quic","end":"closed by moon"}"#
        let e = try AuditEvent.makeDecoder().decode(AuditEvent.self, from: Data(line.utf8))
        #expect(e.verdict == .other("quarantine") && e.protocol == .other("quic") && e.end == .other("closed by moon"))
        #expect(String(decoding: e.jsonLine(), as: UTF8.self) == line, "an unknown word is written back as it was")
    }

    @Test func jsonIsByteIdenticalToTheStringEra() throws {
        let e = AuditEvent(time: Date(timeIntervalSince1970: 1_795_288_381.5), id: "x-2", type: .close, verdict: .redirect,
                           protocol: .tcp, connection: "c", bytes: .init(sent: 1, received: 2), duration_ms: 3,
                           end: .resetBy(.server), error: "server: Connection reset by peer")
        let line = String(decoding: e.jsonLine(), as: UTF8.self)
        #expect(line == #"{"time":"2026-11-21T19:13:01.500000Z","id":"x-2","type":"close","verdict":"redirect","protocol":"tcp","connection":"c","bytes":{"sent":1,"received":2},"duration_ms":3,"end":"reset by server","error":"server: Connection reset by peer"}"#)
        // Foundation's encoder (the control socket's filter, status) writes the same strings
        let filter = try JSONEncoder().encode(EventFilter(verdict: .grantExpired, type: .policy))
        let obj = try JSONSerialization.jsonObject(with: filter) as? [String: String]
        #expect(obj == ["verdict": "grant-expired", "type": "policy"])
        #expect(try JSONDecoder().decode(EventFilter.self, from: filter) == EventFilter(verdict: .grantExpired, type: .policy))
    }
}
