import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on loopback that can cut, throttle, delay and corrupt what passes through it,
/// per connection. Blocking sockets and two threads per connection: simple and exact about
/// byte counts, which is what the fault tests need.
final class FaultProxy: @unchecked Sendable {
    struct Plan: Sendable {
        /// Close both sides after this many bytes from client to server.
        var cutAfter: Int? = nil
        /// Bytes per second from client to server, or nil for no limit.
        var bytesPerSecond: Int? = nil
        /// Delay added before forwarding each read, in microseconds (a long round trip).
        var delayMicroseconds: UInt32 = 0
        /// Flip a bit of the client-to-server byte at this offset.
        var corruptAt: Int? = nil
    }

    let port: Int
    private let listenFD: Int32
    private let upstreamPort: Int
    private let plan: @Sendable (Int) -> Plan
    private let connections = Atomic<Int>(0)
    private let open = Mutex<Set<Int32>>([])
    private let stopped = Atomic<Bool>(false)

    /// Bytes forwarded client → server, over all connections.
    let forwarded = Atomic<Int>(0)

    init(upstreamPort: Int, plan: @escaping @Sendable (_ connectionIndex: Int) -> Plan) throws {
        self.upstreamPort = upstreamPort
        self.plan = plan
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listenFD = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        for fd in open.withLock({ Array($0) }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { if !stopped.load(ordering: .relaxed) { stop() } }

    var connectionCount: Int { connections.load(ordering: .relaxed) }

    static func loopback(port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listenFD, nil, nil)
            if client < 0 { if errno == EINTR { continue } else { return } }
            let index = connections.add(1, ordering: .relaxed).oldValue
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = Self.loopback(port: UInt16(upstreamPort))
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard ok == 0 else { close(client); close(server); continue }
            open.withLock { $0.insert(client); $0.insert(server) }
            let p = plan(index)
            let done = Atomic<Int>(0)
            let finish: @Sendable () -> Void = { [self] in
                shutdown(client, Int32(SHUT_RDWR)); shutdown(server, Int32(SHUT_RDWR))
                if done.add(1, ordering: .relaxed).newValue == 2 {
                    open.withLock { $0.remove(client); $0.remove(server) }
                    close(client); close(server)
                }
            }
            Thread.detachNewThread { [self] in pump(from: client, to: server, plan: p, countForward: true); finish() }
            Thread.detachNewThread { [self] in pump(from: server, to: client, plan: Plan(), countForward: false); finish() }
        }
    }

    private func pump(from: Int32, to: Int32, plan: Plan, countForward: Bool) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var total = 0
        let start = Date()
        while true {
            var want = buffer.count
            if let cut = plan.cutAfter { want = min(want, cut - total) }
            if want <= 0 { return }
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, want) }
            if n <= 0 { return }
            if plan.delayMicroseconds > 0 { usleep(plan.delayMicroseconds) }
            if let at = plan.corruptAt, at >= total, at < total + n { buffer[at - total] ^= 0x10 }
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { write(to, $0.baseAddress! + sent, n - sent) }
                if m <= 0 { return }
                sent += m
            }
            total += n
            if countForward { forwarded.add(n, ordering: .relaxed) }
            if let rate = plan.bytesPerSecond {
                let due = Double(total) / Double(rate) - Date().timeIntervalSince(start)
                if due > 0 { usleep(useconds_t(due * 1e6)) }
            }
        }
    }
}

/// A loopback port that was free a moment ago (for a server that must keep its port across
/// a restart).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = FaultProxy.loopback(port: 0)
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else { throw POSIXError(.EADDRINUSE) }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// True once something accepts TCP connections on the loopback port.
func isListening(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = FaultProxy.loopback(port: UInt16(port))
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}
