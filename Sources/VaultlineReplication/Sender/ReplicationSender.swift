import Logging
import NIOCore
import NIOPosix
import Synchronization
import VaultlineCore

/// One replication pass (`vaultline replicate`): exchange inventories, push what the receiver
/// lacks in the order config/keys → packs → index → snapshots, each kind only after every file
/// of the kinds before it is durable. A cut connection is retried (the receiver resumes each
/// file from its partial copy) until `retries` consecutive attempts fail.
public final class ReplicationSender: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var identity: SiteIdentity
        public var transfers: Int = 4
        /// Bytes per second for DATA, or nil for no limit.
        public var limitRate: Double?
        /// Consecutive failed connection attempts before the pass gives up.
        public var retries: Int = 8
        public var clientName: String = FileSystem.hostName()

        public init(host: String, port: Int, identity: SiteIdentity) {
            self.host = host
            self.port = port
            self.identity = identity
        }
    }

    /// What a pass did (also its `--json` output).
    public struct Summary: Sendable, Codable {
        public var filesSent = 0
        /// Payload bytes sent in DATA frames, resends included.
        public var bytesSent: Int64 = 0
        /// Bytes of files whose transfer resumed from a partial copy at the receiver.
        public var bytesResumed: Int64 = 0
        /// Files the receiver had already (by inventory or HAVE).
        public var filesPresent = 0
        public var filesAcknowledgedHave = 0
        public var hashMismatchesResent = 0
        public var reconnects = 0
        public var seconds = 0.0
        public var mibPerSecond: Double { seconds > 0 ? Double(bytesSent) / 1_048_576 / seconds : 0 }

        enum CodingKeys: String, CodingKey {
            case filesSent, bytesSent, bytesResumed, filesPresent, filesAcknowledgedHave, hashMismatchesResent, reconnects, seconds
        }
    }

    let repositoryPath: String
    let options: Options
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    private let summary = SummaryBox()
    /// Called with the payload bytes of each DATA frame sent (progress line).
    let progress: @Sendable (Int) -> Void

    public init(repositoryPath: String, options: Options, logger: Logger, progress: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.repositoryPath = repositoryPath
        self.options = options
        self.logger = logger
        self.progress = progress
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
    }

    deinit {
        group.shutdownGracefully { _ in }
        threadPool.shutdownGracefully { _ in }
    }

    public func run() async throws -> Summary {
        let start = MonotonicClock.nanoseconds()
        let limiter = options.limitRate.map { RateLimiter(bytesPerSecond: $0) }
        var failures = 0, busy = 0
        while true {
            let before = summary.withLock { ($0.bytesSent, $0.filesSent, $0.filesAcknowledgedHave) }
            do {
                try await pass(limiter: limiter)
                break
            } catch let error as ReplicationError where error.code == .busy && busy < 100 {
                // Right after a reconnect the receiver may not have noticed the old connection
                // end yet, and still holds its transfers: wait for it, without counting a failure.
                busy += 1
                summary.withLock { $0.reconnects += 1 }
                try await Task.sleep(nanoseconds: 100_000_000)
            } catch let error as ReplicationError where Self.isRetryable(error) && failures < options.retries {
                busy = 0
                // Consecutive failures: an attempt that moved data starts the count again.
                let after = summary.withLock { ($0.bytesSent, $0.filesSent, $0.filesAcknowledgedHave) }
                failures = after == before ? failures + 1 : 1
                summary.withLock { $0.reconnects += 1 }
                let delay = min(5.0, 0.05 * Double(1 << min(failures, 7)))
                logger.warning("connection failed; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)", "delay": "\(delay)"])
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            }
        }
        return summary.withLock { s in
            s.seconds = Double(MonotonicClock.nanoseconds() - start) / 1e9
            return s
        }
    }

    /// The running totals, shared with the per-frame progress callback.
    final class SummaryBox: Sendable {
        private let value = Mutex(Summary())
        func withLock<R>(_ body: (inout Summary) -> R) -> R { value.withLock { body(&$0) } }
    }

    static func isRetryable(_ e: ReplicationError) -> Bool {
        switch e.code {
        case .connection, .busy, .shuttingDown, .noSpace: true
        default: false
        }
    }

    private func pass(limiter: RateLimiter?) async throws {
        // The inventory is read again on every attempt: a new backup may have added files.
        let local = try LocalInventory(repositoryPath: repositoryPath)
        // The inventory's SUMMARY and LIST requests go out with the HELLO: a round trip saved.
        try await ReplicaConnection.with(
            host: options.host, port: options.port, identity: options.identity, repositoryID: local.repositoryID,
            clientName: options.clientName, group: group, early: { requests in try await local.missingByKind(at: requests) }
        ) { connection, missingByKind in
            guard connection.welcome.role.mayPush else {
                throw ReplicationError(.forbidden, "this certificate's role (\(connection.welcome.role)) may not push")
            }
            let width = max(1, min(self.options.transfers, Int(connection.welcome.maxTransfers)))
            var phases: [[FileRef]] = []
            for phase in ReplicatedKind.pushOrder {
                var missing: [FileRef] = []
                for kind in phase {
                    let names = missingByKind[kind] ?? []
                    self.summary.withLock { $0.filesPresent += (local.names[kind]?.count ?? 0) - names.count }
                    missing += names.map { FileRef(kind, $0) }
                }
                phases.append(missing)
            }
            // While a group streams, the first files of the next one are offered held: their
            // OFFER and ACCEPT cross the link meanwhile, and only their DATA waits for the group
            // before them to be durable (a round trip saved per group on a long link).
            let holding = connection.welcome.capabilities & ProtocolLimits.heldOffers != 0
                ? max(0, min(Self.heldPerGroup, Int(connection.welcome.maxTransfers) - width)) : 0
            var held: [FileRef: Offered] = [:]
            for (index, missing) in phases.enumerated() {
                if !missing.isEmpty {
                    self.logger.info("sending", metadata: ["kind": "\(ReplicatedKind.pushOrder[index])", "files": "\(missing.count)"])
                }
                let early = index + 1 < phases.count ? Array(phases[index + 1].prefix(holding)) : []
                held = try await withThrowingTaskGroup(of: Outcome.self) { group in
                    for ref in early {
                        group.addTask { .offered(ref, try await self.offerHeld(ref, from: local, over: connection)) }
                    }
                    var queue = missing.makeIterator()
                    var taken = held
                    func start(_ ref: FileRef) {
                        let offered = taken.removeValue(forKey: ref)
                        group.addTask { try await self.push(ref, from: local, over: connection, limiter: limiter, offered: offered); return .pushed }
                    }
                    for _ in 0..<width {
                        guard let ref = queue.next() else { break }
                        start(ref)
                    }
                    var answered: [FileRef: Offered] = [:]
                    while let outcome = try await group.next() {
                        switch outcome {
                        case .offered(let ref, let offered?): answered[ref] = offered
                        case .offered: break
                        case .pushed: if let next = queue.next() { start(next) }
                        }
                    }
                    return answered
                }
            }
        }
    }

    /// Files of the next group offered held while a group streams.
    static let heldPerGroup = 4

    private enum Outcome: Sendable {
        case pushed
        case offered(FileRef, Offered?)
    }

    /// A file's OFFER and its first answer, for a transfer that continues later.
    struct Offered: Sendable {
        var requestID: UInt32
        var answers: AsyncThrowingStream<Frame, any Error>
        var first: Frame
    }

    /// OFFER_HELD of a file of the next group. A refusal (busy, or any error) is not the
    /// pass's failure: the file is offered again the usual way in its group.
    private func offerHeld(_ ref: FileRef, from local: LocalInventory, over connection: ReplicaConnection) async throws -> Offered? {
        let size = try local.size(ref)
        let id = connection.makeRequestID()
        let answers = try await connection.send(.offer(ref, size: size, requestID: id, held: true))
        var it = answers.makeAsyncIterator()
        guard let first = try await it.next() else { throw ReplicationError(.connection, "connection closed", object: ref.description) }
        guard first.type == .have || first.type == .accept else {
            connection.finish(id)
            return nil
        }
        return Offered(requestID: id, answers: answers, first: first)
    }

    /// Sends one file, continuing an answered held offer when there is one; a hash mismatch at
    /// the receiver is retried once from the start.
    private func push(_ ref: FileRef, from local: LocalInventory, over connection: ReplicaConnection, limiter: RateLimiter?, offered: Offered? = nil) async throws {
        let size = try local.size(ref)
        let path = local.path(ref)
        var offered = offered
        for attempt in 0..<2 {
            let id: UInt32, first: Frame?
            var it: AsyncThrowingStream<Frame, any Error>.AsyncIterator
            let wasHeld = offered != nil
            if let early = offered {
                offered = nil
                id = early.requestID
                it = early.answers.makeAsyncIterator()
                first = early.first
            } else {
                id = connection.makeRequestID()
                it = try await connection.send(.offer(ref, size: size, requestID: id)).makeAsyncIterator()
                first = try await it.next()
            }
            defer { connection.finish(id) }
            guard let first else { throw ReplicationError(.connection, "connection closed", object: ref.description) }
            switch first.type {
            case .have:
                summary.withLock { $0.filesAcknowledgedHave += 1 }
                return
            case .accept:
                break
            case .error:
                var e = first.decodeError()
                e.object = ref.description
                throw e
            default:
                throw ReplicationError(.malformed, "unexpected \(first.type) answer to OFFER", object: ref.description)
            }
            let offset = try first.decodeFileOffset()
            guard offset <= size else {
                throw ReplicationError(.malformed, "ACCEPT at offset \(offset), past the file's \(size) bytes", object: ref.description)
            }
            if offset > 0 { summary.withLock { $0.bytesResumed += offset } }
            if wasHeld && offset == size {
                // A held transfer complete at the receiver (an empty file, or a partial copy cut
                // before its commit) commits on its first DATA frame: an empty one goes now.
                try await connection.write(.u64(.data, UInt64(size), requestID: id))
            }
            let progress = self.progress, summary = self.summary
            try await FileStreamer.stream(
                path: path, from: offset, requestID: id, allocator: connection.allocator, threadPool: threadPool,
                eventLoop: connection.eventLoop, outbound: connection.outbound, announce: false, expectedSize: size, limiter: limiter,
                pool: connection.payloads
            ) { n in
                summary.withLock { $0.bytesSent += Int64(n) }
                progress(n)
            }
            guard let last = try await it.next() else { throw ReplicationError(.connection, "connection closed before DURABLE", object: ref.description) }
            if last.type == .durable {
                summary.withLock { $0.filesSent += 1 }
                return
            }
            var e = last.type == .error ? last.decodeError() : ReplicationError(.malformed, "unexpected \(last.type) answer", fromPeer: true)
            e.object = ref.description
            if e.code == .hashMismatch && attempt == 0 {
                logger.warning("the receiver's copy did not hash to its name; sending it again", metadata: ["file": "\(ref)"])
                summary.withLock { $0.hashMismatchesResent += 1 }
                continue
            }
            if e.code == .hashMismatch {
                throw ReplicationError(.damagedSource, "sent twice and neither copy hashed to its name: the file is damaged at this site", object: path)
            }
            throw e
        }
    }
}
