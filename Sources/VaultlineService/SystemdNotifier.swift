import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// systemd's notification protocol (sd_notify(3)) without libsystemd: each message is one
/// datagram to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when
/// it starts with `@`). `READY=1` once the first pass is done (`Type=notify`), `WATCHDOG=1`
/// at least every second from the pass loop (`WatchdogSec=`), `STOPPING=1` on the way out.
/// A failed send is ignored: systemd then restarts the service, which is what it is for.
public final class SystemdNotifier: Sendable {
    let address: String

    init(address: String) { self.address = address }

    /// Nil when the service does not run under systemd with notifications on.
    public static func fromEnvironment() -> SystemdNotifier? {
        guard let name = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !name.isEmpty,
              name.hasPrefix("/") || name.hasPrefix("@") else { return nil }
        return SystemdNotifier(address: name)
    }

    /// Sends one message; false when it could not be sent.
    @discardableResult
    public func send(_ message: String) -> Bool {
        var path = Array(address.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }  // abstract namespace
        var addr = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard path.count < capacity else { return false }
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count)
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == bytes.count
    }
}
