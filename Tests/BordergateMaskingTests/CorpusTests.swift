import Foundation
import Testing
import BordergateMasking

/// Precision and recall per detector on the labelled corpus of scripts/masking-corpus.py.
/// A detection counts as right when it overlaps a labelled value of its type; "exact" when it has
/// the same bounds.
@Suite struct CorpusTests {
    struct Record: Decodable {
        let kind: String
        let text: String
        let spans: [[Span]]
        enum Span: Decodable {
            case int(Int), string(String)
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
            }
        }
        var labels: [(range: Range<Int>, type: String)] {
            spans.compactMap {
                guard case .int(let s) = $0[0], case .int(let e) = $0[1], case .string(let t) = $0[2] else { return nil }
                return (s..<e, t)
            }
        }
    }

    static func corpus() throws -> [Record] {
        let url = try #require(Bundle.module.url(forResource: "masking-corpus", withExtension: "jsonl", subdirectory: "Fixtures"))
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Record.self, from: Data($0.utf8)) }
    }

    @Test func precisionAndRecall() throws {
        let records = try Self.corpus()
        #expect(records.count > 500)
        var tp: [String: Int] = [:], fp: [String: Int] = [:], fn: [String: Int] = [:], exact: [String: Int] = [:]
        var failures: [String] = []
        for r in records {
            let bytes = Array(r.text.utf8)
            let detections = engine.detect(bytes)
            let labels = r.labels
            for d in detections {
                if let l = labels.first(where: { $0.type == d.detector && $0.range.overlaps(d.range) }) {
                    tp[d.detector, default: 0] += 1
                    if l.range == d.range { exact[d.detector, default: 0] += 1 }
                } else {
                    fp[d.detector, default: 0] += 1
                    failures.append("FP \(d.detector): \(String(decoding: bytes[d.range], as: UTF8.self))")
                }
            }
            for l in labels where !detections.contains(where: { $0.detector == l.type && $0.range.overlaps(l.range) }) {
                fn[l.type, default: 0] += 1
                failures.append("FN \(l.type): \(String(decoding: bytes[l.range], as: UTF8.self))")
            }
        }
        var report = ["detector        values  precision  recall  exact"]
        for d in BuiltinDetector.allCases.map(\.rawValue) {
            let t = tp[d, default: 0], p = fp[d, default: 0], n = fn[d, default: 0]
            let precision = t + p == 0 ? 1 : Double(t) / Double(t + p)
            let recall = t + n == 0 ? 1 : Double(t) / Double(t + n)
            report.append(d.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "%6d  %9.3f  %6.3f  %5.3f", t + n, precision, recall,
                                                                                       t == 0 ? 0 : Double(exact[d, default: 0]) / Double(t)))
            #expect(t + n > 100, "\(d): too few values in the corpus")
            #expect(recall >= 0.95, "\(d) recall \(recall)")
            #expect(precision >= 0.98, "\(d) precision \(precision)")
        }
        print(report.joined(separator: "\n"))
        print(failures.prefix(60).joined(separator: "\n"))
    }

    /// The whole corpus through a stream in odd-sized chunks gives what masking each line gives.
    @Test func streamingTheCorpus() throws {
        let records = try Self.corpus()
        let all = Array(records.map(\.text).joined(separator: "\n").utf8)
        let whole = engine.mask(all)
        var s = engine.makeStream()
        var out = [UInt8](), i = 0, n = 1
        while i < all.count {
            out += s.feed(all[i..<min(i + n, all.count)])
            i += n
            n = n % 997 + 13
        }
        out += s.finish()
        #expect(out == whole.bytes)
        #expect(s.counts == whole.counts)
    }
}
