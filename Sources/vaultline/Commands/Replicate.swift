import ArgumentParser
import Foundation
import Logging
import VaultlineCore
import VaultlineReplication
import VaultlineS3

/// The TLS identity options every replication command takes.
struct SiteIdentityOptions: ParsableArguments {
    @Option(help: "This site's certificate (PEM).") var cert: String?
    @Option(help: "This site's private key (PEM).") var key: String?
    @Option(help: "The site CA certificate (PEM) that peers must chain to.") var ca: String?

    func load() throws -> SiteIdentity {
        guard let cert, let key, let ca else {
            throw VaultlineError(.invalidArgument, "--cert, --key and --ca are needed: the site's TLS identity (vaultline site issue makes them)")
        }
        return try SiteIdentity(certificatePath: cert, keyPath: key, caPath: ca)
    }
}

/// HOST:PORT, with [v6]:PORT for IPv6 literals.
func parseHostPort(_ s: String, option: String) throws -> (host: String, port: Int) {
    var host = Substring(s), portText = Substring("")
    if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
        host = s[s.index(after: s.startIndex)..<close]
        portText = s[close...].dropFirst(2)
    } else if let colon = s.lastIndex(of: ":") {
        host = s[..<colon]
        portText = s[s.index(after: colon)...]
    }
    guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
        throw VaultlineError(.invalidArgument, "\(option) must be HOST:PORT, not \(s)")
    }
    return (String(host), port)
}

/// "10M", "512K", "1.5G" bytes per second (binary multiples), or "100mbit" bits per second
/// (decimal multiples, as link rates are given).
func parseRate(_ s: String) throws -> Double {
    var text = s.lowercased()
    let bits = text.hasSuffix("bit")
    if bits { text.removeLast(3) }
    var scale = 1.0
    if let last = text.last, let power = ["k": 1.0, "m": 2.0, "g": 3.0][String(last)] {
        scale = bits ? pow(1000, power) : pow(1024, power)
        text.removeLast()
    }
    guard let v = Double(text), v > 0 else {
        throw VaultlineError(.invalidArgument, "--limit-rate must look like 20M (bytes/s) or 100mbit, not \(s)")
    }
    return bits ? v * scale / 8 : v * scale
}

func makeLogger(_ label: String, level: Logger.Level) -> Logger {
    var l = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
    l.logLevel = level
    return l
}

struct Replicate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Push the repository's new files to a replica receiver or a site-B bucket (one pass).",
        discussion: """
            Sends config and keys, then packs, then index files, then snapshots, each only after \
            the previous kinds are durable at the receiver. Interrupted transfers resume from \
            the receiver's partial copy; the pass retries a cut connection --retries times. \
            With --to s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] the target is a bucket with \
            Object Lock (created so when missing): every object is put in COMPLIANCE mode for \
            --lock-days; no TLS identity is needed, credentials come from the environment.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var identity: SiteIdentityOptions
    @Option(help: "The receiver, HOST:PORT.") var to: String
    @Option(help: "Files in flight at once.") var transfers = 4
    @Option(help: "Cap on bytes per second: 20M, 512K, or 100mbit.") var limitRate: String?
    @Option(help: "Failed connection attempts in a row before giving up.") var retries = 8
    @Option(help: "Log level: debug, info, warning, error.") var logLevel = "warning"
    @Option(help: "To a bucket: days each object is locked (COMPLIANCE) from its upload.") var lockDays = 30

    func run() async throws {
        if S3Location.isS3(to) {
            try reporting { try replicateToBucket() }
            return
        }
        try await reporting {
            let (host, port) = try parseHostPort(to, option: "--to")
            var options = ReplicationSender.Options(host: host, port: port, identity: try identity.load())
            guard transfers >= 1 && transfers <= 16 else { throw VaultlineError(.invalidArgument, "--transfers must be 1…16") }
            options.transfers = transfers
            options.retries = retries
            options.limitRate = try limitRate.map(parseRate)
            let progress = ProgressLine()
            let sent = ByteCounter()
            let sender = ReplicationSender(
                repositoryPath: try repository.localRepositoryPath, options: options,
                logger: makeLogger("vaultline.replicate", level: Logger.Level(rawValue: logLevel) ?? .warning)
            ) { n in
                let total = sent.add(n)
                progress.update("replicating: \(formatBytes(UInt64(total))) sent, \(formatBytes(UInt64(Double(total) / max(progress.elapsed, 0.001))))/s")
            }
            let summary = try await sender.run()
            progress.done()
            if repository.json {
                try printJSON(summary)
            } else {
                print("sent \(summary.filesSent) files, \(formatBytes(UInt64(summary.bytesSent))) in \(String(format: "%.2f", summary.seconds)) s (\(String(format: "%.1f", summary.mibPerSecond)) MiB/s)")
                print("\(summary.filesPresent + summary.filesAcknowledgedHave) files were already at the receiver; \(formatBytes(UInt64(summary.bytesResumed))) resumed from partial copies; \(summary.reconnects) reconnects")
                if summary.hashMismatchesResent > 0 { print("\(summary.hashMismatchesResent) files failed the receiver's hash check and were sent again") }
            }
        }
    }
}

extension Replicate {
    func replicateToBucket() throws {
        guard transfers >= 1 && transfers <= 16 else { throw VaultlineError(.invalidArgument, "--transfers must be 1…16") }
        guard lockDays >= 1 && lockDays <= 36_500 else { throw VaultlineError(.invalidArgument, "--lock-days must be 1…36500") }
        let target = try openS3Backend(to, lock: ObjectLock(retainFor: TimeInterval(lockDays) * 86_400))
        let location = target.client.location
        try target.prepareLockedBucket()
        let source = try repository.backend()
        let progress = ProgressLine()
        let sent = ByteCounter()
        let report = try BucketReplicator(source: source, target: target, transfers: transfers).run { bytes in
            let total = sent.add(bytes)
            progress.update("replicating: \(formatBytes(UInt64(total))) sent")
        }
        progress.done()
        if repository.json {
            try printJSON(report)
        } else {
            print("sent \(report.filesSent) files, \(formatBytes(UInt64(report.bytesSent))) in \(String(format: "%.2f", report.seconds)) s (\(String(format: "%.1f", report.mibPerSecond)) MiB/s) to \(location), locked for \(lockDays) days")
            print("\(report.filesPresent) files were already in the bucket")
        }
    }
}

// @unchecked Sendable: `total` is behind `lock`
final class ByteCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ n: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        total += n
        return total
    }
}
