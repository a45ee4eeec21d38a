import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The site-B daemon (`vaultline replica serve`): accepts replication connections over mutual
/// TLS and stores what primaries push into a ``ReplicaStore``. Many peers at once; each
/// connection is served by its own task.
public final class ReplicaServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var identity: SiteIdentity
        public var root: String
        public var serverName: String
        /// Serve this one repository read-only instead of a root of replicas.
        public var servedRepository: String?
        /// Timeouts and connection caps (docs/PROTOCOL.md, "Limits and timeouts").
        public var limits = ReceiverLimits()
        /// Fault injection for tests: called with each received file's path once it is written
        /// and fsync'd, before it is hashed back, to alter bytes as a faulty disk would.
        var receivedFileFault: (@Sendable (String) -> Void)?

        public init(host: String, port: Int, identity: SiteIdentity, root: String, serverName: String, servedRepository: String? = nil) {
            self.servedRepository = servedRepository
            self.host = host
            self.port = port
            self.identity = identity
            self.root = root
            self.serverName = serverName
        }
    }

    let configuration: Configuration
    let store: ReplicaStore
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    private let state = Mutex(ServerState())
    /// GET streams running, over all connections (tests read it to see the per-connection
    /// bound hold while a peer reads nothing).
    let getStreams = Atomic<Int>(0)

    private struct ServerState {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var perAddress: [String: Int] = [:]
        var shuttingDown = false
        var boundPort: Int?
        /// Refusals at accept are logged at most once a second, with how many there were.
        var refusedSinceLog = 0
        var lastRefusalLog: ContinuousClock.Instant?
    }

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        store = try configuration.servedRepository.map { try ReplicaStore(serving: $0) }
            ?? ReplicaStore(root: configuration.root, receivedFileFault: configuration.receivedFileFault)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        threadPool = NIOThreadPool(numberOfThreads: 4)
        threadPool.start()
    }

    deinit {
        group.shutdownGracefully { _ in }
        threadPool.shutdownGracefully { _ in }
    }

    /// The port it listens on, once bound (useful with port 0).
    public var port: Int? { state.withLock { $0.boundPort } }

    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Connections admitted and not yet ended.
    public var openConnections: Int { state.withLock { $0.connections.count } }

    /// Listens and serves until ``shutdown()``; `onListening` gets the bound port.
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        let ssl = try configuration.identity.serverContext()
        DescriptorLimit.raise(toServe: configuration.limits.maxConnections, logger: logger)
        let limits = configuration.limits
        let watchdogLogger = logger
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    var log = watchdogLogger
                    log[metadataKey: "peer"] = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
                    let activity = ConnectionActivity()
                    try sync.addHandler(NIOSSLServerHandler(context: ssl))
                    try sync.addHandler(ConnectionWatchdog(limits: limits, activity: activity, logger: log))
                    try sync.addHandler(FrameAssembler())
                    try sync.addHandler(FrameEncoder())
                    let connection = try NIOAsyncChannel<Frame, Frame>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8)))
                    return AcceptedConnection(channel: connection, activity: activity)
                }
            }
        let port = listener.channel.localAddress?.port ?? configuration.port
        let stopNow = state.withLock { s -> Bool in
            s.listener = listener.channel
            s.boundPort = port
            return s.shuttingDown
        }
        if stopNow { try? await listener.channel.close() }
        logger.info("listening", metadata: ["address": "\(configuration.host):\(port)", "root": "\(configuration.root)"])
        onListening(port)
        try await listener.executeThenClose { inbound in
            await withDiscardingTaskGroup { group in
                do {
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                } catch {
                    self.logger.error("accept failed", metadata: ["error": "\(error)"])
                }
            }
        }
        logger.info("stopped")
    }

    /// Stops accepting, closes every connection (partial files stay, resumable), and makes
    /// ``run(onListening:)`` return once the connections have ended.
    public func shutdown() {
        let (listener, connections) = state.withLock { s in
            s.shuttingDown = true
            return (s.listener, Array(s.connections.values))
        }
        logger.info("shutting down", metadata: ["connections": "\(connections.count)"])
        listener?.close(promise: nil)
        for c in connections { c.close(promise: nil) }
    }

    private func serve(_ accepted: AcceptedConnection) async {
        let connection = accepted.channel
        let channel = connection.channel
        let key = ObjectIdentifier(channel)
        let address = channel.remoteAddress?.ipAddress ?? "?"
        var log = logger
        log[metadataKey: "peer"] = "\(channel.remoteAddress.map { "\($0)" } ?? "?")"
        let admission = admit(channel, key: key, address: address)
        switch admission {
        case .admitted: break
        case .shuttingDown:
            try? await channel.close()
            return
        case .refused(let reason, let logNow):
            if let logNow { log.warning("refused a connection", metadata: ["reason": "\(reason)", "refused": "\(logNow)"]) }
            try? await channel.close()
            return
        }
        defer {
            state.withLock { s in
                s.connections.removeValue(forKey: key)
                let left = (s.perAddress[address] ?? 1) - 1
                s.perAddress[address] = left > 0 ? left : nil
            }
        }
        do {
            try await connection.executeThenClose { inbound, outbound in
                let session = ReceiverSession(server: self, channel: channel, outbound: outbound, activity: accepted.activity, logger: log)
                try await session.run(inbound)
            }
        } catch let error as NIOSSLError {
            if case .handshakeFailed = error {
                log.warning("TLS handshake refused", metadata: ["error": PeerText.metadata(error)])
            } else {
                log.info("connection ended", metadata: ["error": PeerText.metadata(error)])
            }
        } catch {
            log.info("connection ended", metadata: ["error": PeerText.metadata(error)])
        }
    }

    private enum Admission {
        case admitted
        case shuttingDown
        /// `logNow`: the number of refusals to log now, nil to stay quiet (rate limit).
        case refused(String, logNow: Int?)
    }

    /// Counts the connection in, or says why not: over the cap in all or from its address.
    private func admit(_ channel: any Channel, key: ObjectIdentifier, address: String) -> Admission {
        let limits = configuration.limits
        return state.withLock { s -> Admission in
            if s.shuttingDown { return .shuttingDown }
            let reason: String
            if s.connections.count >= limits.maxConnections {
                reason = "\(s.connections.count) connections open, the most allowed (--max-connections)"
            } else if s.perAddress[address, default: 0] >= limits.maxConnectionsPerAddress {
                reason = "\(s.perAddress[address, default: 0]) connections open from \(address), the most allowed from one address (--max-connections-per-address)"
            } else {
                s.connections[key] = channel
                s.perAddress[address, default: 0] += 1
                return .admitted
            }
            s.refusedSinceLog += 1
            let now = ContinuousClock.now
            if let last = s.lastRefusalLog, now - last < .seconds(1) { return .refused(reason, logNow: nil) }
            s.lastRefusalLog = now
            defer { s.refusedSinceLog = 0 }
            return .refused(reason, logNow: s.refusedSinceLog)
        }
    }
}

/// An accepted connection and what its session reports to its watchdog.
struct AcceptedConnection: Sendable {
    var channel: NIOAsyncChannel<Frame, Frame>
    var activity: ConnectionActivity
}
