import CLibBPF
import Foundation

/// Typed access to one BPF map through its file descriptor. Key and value are the C structs of
/// `bordergate_abi.h`, so their layouts are the kernel's by construction.
public struct BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: @unchecked Sendable {
    public let fd: Int32
    public let name: String

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    public func lookup(_ key: Key) -> Value? {
        read(key, bpf_map_lookup_elem)
    }

    /// Looks up and removes an entry in one system call (hash maps, Linux 5.14+).
    public func take(_ key: Key) -> Value? {
        read(key, bpf_map_lookup_and_delete_elem)
    }

    /// One value out through `call`, into stack memory: both run for every proxied connection.
    private func read(_ key: Key, _ call: (Int32, UnsafeRawPointer?, UnsafeMutableRawPointer?) -> Int32) -> Value? {
        var key = key
        return withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { value -> Value? in
            guard call(fd, &key, value.baseAddress) == 0 else { return nil }
            return value.baseAddress!.move()
        }
    }

    public func update(_ key: Key, _ value: Value) throws {
        var key = key
        var value = value
        let rc = bpf_map_update_elem(fd, &key, &value, UInt64(BPF_ANY))
        if rc != 0 { throw KernelError.system("updating BPF map \(name)", errno: -rc) }
    }

    /// Writes many entries: in batches of one system call each where the map type supports it
    /// (arrays, hashes), one call per entry where it does not (LPM tries on this kernel).
    public func update(keys: [Key], values: [Value]) throws {
        precondition(keys.count == values.count)
        var done = 0
        var batches = true
        while done < keys.count {
            if batches {
                var count = UInt32(min(keys.count - done, 65_536))
                let rc = keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        bpf_map_update_batch(fd, k.baseAddress! + done, v.baseAddress! + done, &count, nil)
                    }
                }
                if rc == 0 { done += Int(count); continue }
                if rc == -EINVAL || rc == -ENOTSUP || rc == -EOPNOTSUPP || rc == -524 /* ENOTSUPP */ {
                    batches = false
                    continue
                }
                throw KernelError.system("updating BPF map \(name)", errno: -rc)
            }
            try update(keys[done], values[done])
            done += 1
        }
    }

    @discardableResult
    public func delete(_ key: Key) -> Bool {
        var key = key
        return bpf_map_delete_elem(fd, &key) == 0
    }

    /// Every key in the map. Entries may change underneath; good enough for listings.
    public func keys() -> [Key] {
        var out: [Key] = []
        let cur = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        let next = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        defer { cur.deallocate(); next.deallocate() }
        var first = true
        while bpf_map_get_next_key(fd, first ? nil : UnsafeRawPointer(cur), next) == 0 {
            out.append(next.pointee)
            cur.update(from: next, count: 1)
            first = false
            if out.count > 1_000_000 { break }
        }
        return out
    }
}

/// Per-CPU counters (`stats`): one value per possible CPU, summed.
public struct BPFPerCPUCounters: @unchecked Sendable {
    let fd: Int32
    let cpus: Int

    init(fd: Int32) {
        self.fd = fd
        self.cpus = max(1, Int(libbpf_num_possible_cpus()))
    }

    public func value(at index: UInt32) -> UInt64 {
        var key = index
        var values = [UInt64](repeating: 0, count: cpus)
        guard bpf_map_lookup_elem(fd, &key, &values) == 0 else { return 0 }
        return values.reduce(0, &+)
    }
}
