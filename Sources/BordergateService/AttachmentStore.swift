import BordergatePolicy
import Foundation

/// A guarded cgroup's policy and its live grants.
struct Assignment: Codable, Sendable, Equatable {
    var cgroup: String
    var policy: String
    var grants: [Grant] = []
}

/// Which policy each guarded cgroup has, kept in a file for a restarted daemon (grants are not
/// kept: the kernel ends them on time by itself). The pins say which cgroups are guarded and by
/// which slots; only this file says by which policy.
struct AttachmentStore: Sendable {
    let path: String

    /// What the file holds; an absent or unreadable file holds nothing (the cgroups it would name
    /// are parked: fail closed).
    func read() -> [UInt64: Assignment] {
        guard let data = FileManager.default.contents(atPath: path),
              let raw = try? JSONDecoder().decode([String: Assignment].self, from: data) else { return [:] }
        var out: [UInt64: Assignment] = [:]
        for (k, v) in raw { if let id = UInt64(k) { out[id] = v } }
        return out
    }

    /// Replaces the file whole (written aside, then renamed), without grants.
    func save(_ assignments: [UInt64: Assignment]) throws(AttachmentStoreError) {
        var raw: [String: Assignment] = [:]
        for (id, a) in assignments {
            var b = a
            b.grants = []
            raw[String(id)] = b
        }
        guard let data = try? JSONEncoder().encode(raw) else { throw .encoding(path: path) }
        // a missing directory shows as the write's ENOENT below
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let tmp = path + ".new"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw .system(path: tmp, operation: "write", errno: errno)
        }
        guard rename(tmp, path) == 0 else { throw .system(path: path, operation: "replace", errno: errno) }
    }
}

/// Why the attachments could not be saved: the file, what was done to it, and errno.
struct AttachmentStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    var path: String
    var operation: String
    var errno: Int32?

    static func system(path: String, operation: String, errno: Int32) -> Self {
        .init(path: path, operation: operation, errno: errno)
    }

    static func encoding(path: String) -> Self { .init(path: path, operation: "encode", errno: nil) }

    var description: String {
        let why = errno.map { String(cString: strerror($0)) } ?? "not encodable"
        return "cannot \(operation) \(path): \(why); a restarted daemon will park the cgroups it does not find there"
    }
}
