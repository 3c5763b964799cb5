// Masking scan speed, clean and dense text, beside a Python `re` baseline of the same detectors in
// the same run:  swift run -c release MaskingBench [--mb N] [--json]
//
// Both texts are built from the labelled corpus (Tests/BordergateMaskingTests/Fixtures): "clean" is
// its prose lines, "dense" its lines full of values and decoys, each repeated to N MB (default 64).
// The engine reads them in 64 KiB chunks through a MaskingStream, as the proxy will. Both sides are
// timed in CPU time of the scanning thread (MB/s per core), so a busy machine does not skew the ratio.
import BordergateMasking
import Foundation

let args = CommandLine.arguments
let megabytes = args.firstIndex(of: "--mb").flatMap { Int(args[$0 + 1]) } ?? 64
let asJSON = args.contains("--json")
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let corpusURL = root.appendingPathComponent("Tests/BordergateMaskingTests/Fixtures/masking-corpus.jsonl")
let baselineURL = root.appendingPathComponent("scripts/bench-tools/masking_baseline.py")

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("MaskingBench: \(message)\n".utf8))
    exit(1)
}

guard let corpus = try? String(contentsOf: corpusURL, encoding: .utf8) else {
    fail("cannot read \(corpusURL.path); run it from the package (swift run -c release MaskingBench)")
}
var clean = [UInt8](), dense = [UInt8]()
for line in corpus.split(separator: "\n") {
    guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
          let text = record["text"] as? String, let kind = record["kind"] as? String else { fail("bad corpus line: \(line.prefix(60))") }
    if kind == "clean" { clean += Array(text.utf8) + [10] } else { dense += Array(text.utf8) + [10] }
}

func repeated(_ unit: [UInt8], to size: Int) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(size + unit.count)
    while out.count < size { out += unit }
    return out
}

let engine = MaskingEngine(MaskingConfiguration(hashKey: Array("bench".utf8)))

/// CPU time of this thread: MB/s per core, whatever else the machine runs.
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Best of 3 passes, MB/s per core, and the values masked per pass.
func measure(_ data: [UInt8]) -> (mbps: Double, values: Int) {
    var best = Double.infinity, values = 0
    for _ in 0..<3 {
        var stream = engine.makeStream()
        var out = 0
        let start = cpuSeconds()
        var i = 0
        while i < data.count {
            out &+= stream.feed(data[i..<min(i + 65536, data.count)]).count
            i += 65536
        }
        out &+= stream.finish().count
        let seconds = cpuSeconds() - start
        if out == 0 { fail("no output") }
        best = min(best, seconds)
        values = stream.counts.total
    }
    return (Double(data.count) / best / 1e6, values)
}

let size = megabytes * 1_000_000
let cleanText = repeated(clean, to: size), denseText = repeated(dense, to: size)
let cleanResult = measure(cleanText), denseResult = measure(denseText)

// the baseline, on the first MB of the same texts
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("masking-bench-\(getpid())")
try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: dir) }
let cleanFile = dir.appendingPathComponent("clean.txt"), denseFile = dir.appendingPathComponent("dense.txt")
try Data(cleanText.prefix(2_000_000)).write(to: cleanFile)
try Data(denseText.prefix(2_000_000)).write(to: denseFile)
let python = Process()
python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
python.arguments = ["python3", baselineURL.path, "--limit-mb", "1", "clean=\(cleanFile.path)", "dense=\(denseFile.path)"]
let pipe = Pipe()
python.standardOutput = pipe
do { try python.run() } catch { fail("cannot run python3 for the baseline: \(error)") }
let output = pipe.fileHandleForReading.readDataToEndOfFile()
python.waitUntilExit()
guard python.terminationStatus == 0,
      let baseline = try? JSONSerialization.jsonObject(with: output) as? [String: [String: Any]],
      let pyClean = baseline["clean"]?["mb_per_s"] as? Double, let pyDense = baseline["dense"]?["mb_per_s"] as? Double else {
    fail("the Python baseline failed (exit \(python.terminationStatus)): \(String(decoding: output, as: UTF8.self))")
}

let valuesPerMB = Double(denseResult.values) / Double(denseText.count) * 1e6
if asJSON {
    let result: [String: Any] = [
        "masking_clean_mb_per_s": (cleanResult.mbps * 10).rounded() / 10, "masking_dense_mb_per_s": (denseResult.mbps * 10).rounded() / 10,
        "python_re_clean_mb_per_s": pyClean, "python_re_dense_mb_per_s": pyDense,
        "dense_values_per_mb": valuesPerMB.rounded(), "megabytes": megabytes,
    ]
    print(String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys]), as: UTF8.self))
} else {
    print("masking scan, \(megabytes) MB per text, 64 KiB chunks, best of 3, MB/s per core (CPU time); dense: \(Int(valuesPerMB)) values/MB")
    print("text    bordergate MB/s   python re MB/s   ratio")
    for (name, ours, theirs) in [("clean", cleanResult.mbps, pyClean), ("dense", denseResult.mbps, pyDense)] {
        print(name.padding(toLength: 8, withPad: " ", startingAt: 0)
              + String(format: "%15.1f   %14.2f   %5.0fx", ours, theirs, ours / theirs))
    }
}
