import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Site B in a network namespace of its own, joined to the test's namespace by a veth pair with
/// a token-bucket rate limit (`tc tbf`) on site A's side: a real link between two network
/// stacks, which the test can take down and bring up. Needs root and `ip`; deleted on `close()`.
final class NetnsLink {
    let namespace: String
    let hostSide: String
    let siteAAddress: String
    let siteBAddress: String

    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// True when this process may create network namespaces with a rate-limited link (root,
    /// `ip` and `tc` present; the kernel is asked when the link is made).
    static var available: Bool {
        geteuid() == 0 && ip != nil && FaultTests.shell("command -v tc") == 0
    }

    init(rateMbit: Int) throws {
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        namespace = "vlt-\(tag)"
        hostSide = "vlt\(tag.prefix(8))a"
        let peer = "vlt\(tag.prefix(8))b"
        let net = "10.\(Int.random(in: 100...199)).\(Int.random(in: 1...254))"
        siteAAddress = net + ".1"
        siteBAddress = net + ".2"
        let steps = [
            "ip netns add \(namespace)",
            "ip link add \(hostSide) type veth peer name \(peer)",
            "ip link set \(peer) netns \(namespace)",
            "ip addr add \(siteAAddress)/24 dev \(hostSide)",
            "ip -n \(namespace) addr add \(siteBAddress)/24 dev \(peer)",
            "ip link set \(hostSide) up",
            "ip -n \(namespace) link set \(peer) up",
            "ip -n \(namespace) link set lo up",
            "tc qdisc add dev \(hostSide) root tbf rate \(rateMbit)mbit burst 64kb latency 100ms",
        ]
        for step in steps where FaultTests.shell(step) != 0 {
            close()
            throw NetnsError(step: step)
        }
    }

    /// Takes site A's end of the link down or up.
    func setLink(up: Bool) {
        _ = FaultTests.shell("ip link set \(hostSide) \(up ? "up" : "down")")
    }

    /// `command` run inside site B's namespace.
    func process(_ executable: String, _ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.ip ?? "/usr/sbin/ip")
        p.arguments = ["netns", "exec", namespace, executable] + arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        return p
    }

    /// True once something accepts connections at site B's `port` (from site A's namespace).
    func isListening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, siteBAddress, &addr.sin_addr)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    func close() {
        _ = FaultTests.shell("ip netns del \(namespace)")  // takes the veth pair with it
        _ = FaultTests.shell("ip link del \(hostSide)")
    }

    struct NetnsError: Error, CustomStringConvertible {
        var step: String
        var description: String { "cannot set up the namespace link: `\(step)` failed" }
    }
}
