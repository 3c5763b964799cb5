#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

func mkdirp(_ path: String) -> Bool { mkdir(path, 0o755) == 0 }

func write(_ path: String, _ bytes: [UInt8]) -> Bool {
    guard let f = fopen(path, "wb") else { return false }
    defer { fclose(f) }
    return bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) } == bytes.count
}
