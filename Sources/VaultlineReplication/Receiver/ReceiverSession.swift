#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOSSL
import VaultlineCore

/// Who is at the other end of a connection, from its certificate.
struct PeerIdentity: Sendable {
    var role: SiteRole?
    var subject: String
}

/// One connection at the receiver: the handshake, then requests in the order they arrive.
/// Appends happen in this task (in order); commits (fsync, read back, hash, link) and GET
/// streams run as child tasks so that other transfers keep flowing meanwhile.
struct ReceiverSession {
    let server: ReplicaServer
    let channel: any Channel
    let outbound: NIOAsyncChannelOutboundWriter<Frame>
    let activity: ConnectionActivity
    var logger: Logger
    /// The peer's identity once TLS is done (a frame has arrived); fuzzing supplies its own.
    var identify: @Sendable (any Channel) async -> PeerIdentity? = Self.tlsIdentity

    /// The request ids in progress on this connection: transfers being received or
    /// committed, and GETs being streamed.
    private let requests = RequestTable(maxGets: ProtocolLimits.maxGetsInFlight)
    /// Buffers for the DATA frames of GET answers, used again frame after frame.
    private let payloads = PayloadPool(limit: 2 * ProtocolLimits.maxGetsInFlight)

    init(server: ReplicaServer, channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<Frame>,
         activity: ConnectionActivity, logger: Logger) {
        self.server = server
        self.channel = channel
        self.outbound = outbound
        self.activity = activity
        self.logger = logger
    }

    static func tlsIdentity(_ channel: any Channel) async -> PeerIdentity? {
        guard let der = try? await channel.nioSSL_peerCertificate().get()?.toDERBytes() else { return nil }
        return PeerIdentity(role: try? SiteCertificates.role(ofCertificateDER: der), subject: SiteCertificates.subject(ofCertificateDER: der))
    }

    func run(_ inbound: NIOAsyncChannelInboundStream<Frame>) async throws {
        var frames = inbound.makeAsyncIterator()
        let first: Frame?
        do { first = try await frames.next() } catch {
            try? await refuse(error, requestID: 0)
            throw error
        }
        guard let first else { return }

        // The TLS handshake is complete once a frame has arrived.
        guard let peer = await identify(channel) else {
            try await refuse(ReplicationError(.forbidden, "no peer certificate"), requestID: 0)
            return
        }
        var log = logger
        log[metadataKey: "subject"] = PeerText.metadata(peer.subject)
        guard let role = peer.role else {
            log.warning("refused: the certificate names no vaultline role")
            try await refuse(ReplicationError(.forbidden, "the certificate names no vaultline role"), requestID: 0)
            return
        }
        guard first.type == .hello else {
            log.warning("refused: the first frame is not HELLO", metadata: ["type": "\(first.type)"])
            try await refuse(ReplicationError(.malformed, "expected HELLO, got \(first.type)"), requestID: 0)
            return
        }
        let hello: Hello
        let repository: ReplicaRepository
        do {
            hello = try first.decodeHello()
            guard hello.minVersion <= ProtocolLimits.version, hello.maxVersion >= ProtocolLimits.version else {
                throw ReplicationError(.version, "no common protocol version: this receiver speaks 1…1, the peer \(hello.minVersion)…\(hello.maxVersion)")
            }
            repository = try server.store.repository(id: hello.repositoryID, create: role.mayPush && !server.store.readOnly)
        } catch {
            log.warning("refused handshake", metadata: ["error": PeerText.metadata(error)])
            try await refuse(error, requestID: 0)
            return
        }
        log[metadataKey: "repository"] = "\(hello.repositoryID.prefix(16))"
        log.info("connected", metadata: ["role": "\(role)", "client": PeerText.metadata(hello.clientName)])
        try await outbound.write(.welcome(Welcome(
            version: ProtocolLimits.version, capabilities: hello.capabilities & ProtocolLimits.capabilities, role: role, maxFrame: UInt32(ProtocolLimits.maxFrameLength),
            chunkSize: UInt32(ProtocolLimits.chunkSize), maxTransfers: ProtocolLimits.maxTransfers,
            serverName: server.configuration.serverName)))
        activity.handshakeDone.store(true, ordering: .relaxed)

        var transfers = Transfers()
        defer {
            for t in transfers.values {
                t.suspend()
                repository.endTransfer(t.ref)
            }
            activity.receiving.store(0, ordering: .relaxed)
        }
        let context = Context(role: role, repository: repository, logger: log, heldOffers: hello.capabilities & ProtocolLimits.heldOffers != 0)
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                let frame: Frame
                do {
                    guard let next = try await frames.next() else { return }
                    frame = next
                } catch {
                    log.warning("connection-level error", metadata: ["error": PeerText.metadata(error)])
                    try? await refuse(error, requestID: 0)
                    throw error
                }
                do {
                    try await handle(frame, context, transfers: &transfers, group: &group)
                } catch let error as ConnectionViolation {
                    log.warning("closing: protocol violation", metadata: ["type": "\(frame.type)", "error": PeerText.metadata(error.error)])
                    try? await refuse(error.error, requestID: 0)
                    return
                } catch {
                    log.warning("refused request", metadata: ["type": "\(frame.type)", "error": PeerText.metadata(error)])
                    // A bad DATA frame drops its transfer (the partial file stays, resumable).
                    if frame.type == .data, let t = transfers.remove(frame.requestID) {
                        t.suspend()
                        repository.endTransfer(t.ref)
                        requests.release(frame.requestID)
                        activity.receiving.store(transfers.owed, ordering: .relaxed)
                    }
                    try await refuse(error, requestID: frame.requestID)
                }
            }
        }
    }

    private struct Context {
        var role: SiteRole
        var repository: ReplicaRepository
        var logger: Logger
        /// The HELLO asked for OFFER_HELD (and the WELCOME granted it).
        var heldOffers: Bool
    }

    /// The transfers being received on this connection, by request id. A held one (OFFER_HELD)
    /// whose DATA has not started is owed nothing yet: it does not count for the progress rule.
    struct Transfers {
        private(set) var files: [UInt32: IncomingFile] = [:]
        private(set) var waiting: Set<UInt32> = []
        var count: Int { files.count }
        /// Transfers whose bytes the peer owes now.
        var owed: Int { files.count - waiting.count }
        var values: Dictionary<UInt32, IncomingFile>.Values { files.values }
        mutating func add(_ file: IncomingFile, id: UInt32, held: Bool) {
            files[id] = file
            if held { waiting.insert(id) }
        }
        /// The transfer for a DATA frame, which starts a held one.
        mutating func start(_ id: UInt32) -> IncomingFile? {
            waiting.remove(id)
            return files[id]
        }
        mutating func remove(_ id: UInt32) -> IncomingFile? {
            waiting.remove(id)
            return files.removeValue(forKey: id)
        }
    }

    /// An error that ends the connection (ERROR with request id 0, then close), as opposed to
    /// one that refuses a single request.
    private struct ConnectionViolation: Error {
        var error: ReplicationError
    }

    private func handle(
        _ frame: Frame, _ context: Context, transfers: inout Transfers,
        group: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        let repository = context.repository
        switch frame.type {
        case .summary:
            var b = frame.payload
            let kind = try b.readKind()
            let bits = Int(try b.readInt(UInt8.self, "bits"))
            guard bits <= 16 else { throw ReplicationError(.malformed, "SUMMARY with \(bits) bits (at most 16)") }
            try await outbound.write(repository.summary(kind, bits: bits).encode(kind: kind, requestID: frame.requestID))

        case .list:
            let request = try ListRequest.decode(frame)
            let (names, more) = repository.list(request)
            var b = channel.allocator.buffer(capacity: 6 + 32 * names.count)
            b.writeInteger(request.kind.rawValue)
            b.writeInteger(UInt8(more ? 1 : 0))
            b.writeInteger(UInt32(names.count))
            for n in names { b.writeName(n) }
            try await outbound.write(Frame(.listReply, requestID: frame.requestID, payload: b))

        case .offer, .offerHeld:
            let held = frame.type == .offerHeld
            guard !held || context.heldOffers else {
                throw ReplicationError(.malformed, "OFFER_HELD on a connection whose HELLO did not ask for held offers")
            }
            guard context.role.mayPush else { throw ReplicationError(.forbidden, "role \(context.role) may not push files") }
            guard !server.store.readOnly else { throw ReplicationError(.forbidden, "this peer serves its repository read-only (for repair); it accepts no files") }
            guard !server.isShuttingDown else { throw ReplicationError(.shuttingDown, "the receiver is stopping; reconnect later") }
            try claim(frame.requestID)
            var accepted = false
            defer { if !accepted { requests.release(frame.requestID) } }
            guard transfers.count + activity.committing.load(ordering: .relaxed) < Int(ProtocolLimits.maxTransfers) else {
                throw ReplicationError(.busy, "more than \(ProtocolLimits.maxTransfers) transfers at once")
            }
            var b = frame.payload
            let ref = try b.readFileRef()
            let size = try b.readFileOffset("offered size")
            if ref.kind == .config && size > ProtocolLimits.maxConfigSize {
                throw ReplicationError(.malformed, "offered config of \(size) bytes, more than \(ProtocolLimits.maxConfigSize)")
            }
            guard let file = try repository.beginTransfer(ref, size: size) else {
                try await outbound.write(Frame(.have, requestID: frame.requestID))
                return
            }
            accepted = true
            try await outbound.write(.u64(.accept, UInt64(file.offset), requestID: frame.requestID))
            if file.isComplete && !held {
                startCommit(file, requestID: frame.requestID, context, group: &group)
            } else {
                // A held file waits for its first DATA frame, even when it is complete already.
                transfers.add(file, id: frame.requestID, held: held)
                activity.receiving.store(transfers.owed, ordering: .relaxed)
            }

        case .data:
            guard let file = transfers.start(frame.requestID) else {
                throw ReplicationError(.malformed, "DATA for request \(frame.requestID), which is no transfer in progress")
            }
            var b = frame.payload
            let at = try b.readFileOffset("DATA offset")
            try file.append(b, at: at)
            if file.isComplete {
                _ = transfers.remove(frame.requestID)
                startCommit(file, requestID: frame.requestID, context, group: &group)
            }
            activity.receiving.store(transfers.owed, ordering: .relaxed)

        case .get:
            guard context.role.mayRead else { throw ReplicationError(.forbidden, "role \(context.role) may not read files") }
            var b = frame.payload
            let ref = try b.readFileRef()
            let offset = try b.readFileOffset("GET offset")
            guard repository.contains(ref) else { throw ReplicationError(.notFound, "no such file here", object: ref.description) }
            try claim(frame.requestID)
            // Back-pressure: no further frame of this peer is read while its GETs in flight
            // are at the limit (each holds up to a chunk or two of memory until it is read).
            await requests.waitForGetSlot()
            let path = repository.path(ref)
            let outbound = self.outbound, allocator = channel.allocator, eventLoop = channel.eventLoop, threadPool = server.threadPool
            let log = context.logger, requests = self.requests, root = server.configuration.root, server = self.server, payloads = self.payloads
            server.getStreams.add(1, ordering: .relaxed)
            group.addTask {
                defer {
                    server.getStreams.subtract(1, ordering: .relaxed)
                    requests.endGet(frame.requestID)
                }
                do {
                    try await FileStreamer.stream(path: path, from: offset, requestID: frame.requestID, allocator: allocator, threadPool: threadPool, eventLoop: eventLoop, outbound: outbound, pool: payloads)
                } catch {
                    log.warning("GET failed", metadata: ["file": "\(ref)", "error": PeerText.metadata(error)])
                    try? await outbound.write(.error(Self.wireCode(error), ReplicationError.wireText(error, hiding: root), requestID: frame.requestID))
                }
            }

        case .hello:
            throw ReplicationError(.malformed, "a second HELLO: the handshake is done")

        default:
            throw ReplicationError(.malformed, "a \(frame.type) frame is not a request")
        }
    }

    /// Takes a request id for a new request; reusing one still in progress ends the connection.
    private func claim(_ id: UInt32) throws {
        guard id != 0 else { throw ReplicationError(.malformed, "request id 0 is for the handshake and connection errors") }
        guard requests.claim(id) else {
            throw ConnectionViolation(error: ReplicationError(.malformed, "request id \(id) is still in progress on this connection"))
        }
    }

    private func startCommit(_ file: IncomingFile, requestID: UInt32, _ context: Context, group: inout ThrowingDiscardingTaskGroup<any Error>) {
        let outbound = self.outbound, threadPool = server.threadPool, log = context.logger
        let activity = self.activity, requests = self.requests, root = server.configuration.root
        activity.committing.add(1, ordering: .relaxed)
        group.addTask {
            defer {
                file.repository.endTransfer(file.ref)
                activity.committing.subtract(1, ordering: .relaxed)
                requests.release(requestID)
            }
            do {
                try await threadPool.runIfActive { try file.commit() }
                log.debug("durable", metadata: ["file": "\(file.ref)", "bytes": "\(file.size)"])
                try await outbound.write(Frame(.durable, requestID: requestID))
            } catch {
                log.error("commit refused", metadata: ["file": "\(file.ref)", "error": PeerText.metadata(error)])
                try? await outbound.write(.error(Self.wireCode(error), ReplicationError.wireText(error, hiding: root), requestID: requestID))
            }
        }
    }

    private func refuse(_ error: any Error, requestID: UInt32) async throws {
        try await outbound.write(.error(Self.wireCode(error), ReplicationError.wireText(error, hiding: server.configuration.root), requestID: requestID))
    }

    static func wireCode(_ error: any Error) -> ReplicationError.Code {
        guard let e = error as? ReplicationError else { return .io }
        return e.code.isSentOnTheWire ? e.code : .io
    }
}
