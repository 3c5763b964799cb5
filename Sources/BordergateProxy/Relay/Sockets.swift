import CBordergateSys
import Foundation
import NIOCore

/// What an errno says, in the lower case the proxy's messages use ("connection refused").
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code)).lowercased()
}

/// Why a dial failed, in the words of a close event's `error` ("timed out" however it timed out).
func dialErrorText(_ code: Int32) -> String {
    code == ETIMEDOUT ? "timed out" : errnoText(code)
}

/// An accepted peer's address, from what accept() wrote (no detour through text).
func socketAddress(_ storage: sockaddr_storage) -> SocketAddress? {
    var storage = storage
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
    case AF_INET6:
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") } }
    default:
        return nil
    }
}
