import Foundation

/// A failure on the kernel side, phrased for an operator: what is wrong, where, and what to do.
public struct KernelError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// A libbpf or syscall failure: `what` failed with `errno`, and the operator's next step.
    static func system(_ what: String, errno code: Int32, hint: String? = nil) -> KernelError {
        let reason = String(cString: strerror(code))
        if let hint {
            return KernelError("\(what): \(reason); \(hint)")
        }
        return KernelError("\(what): \(reason)")
    }
}
