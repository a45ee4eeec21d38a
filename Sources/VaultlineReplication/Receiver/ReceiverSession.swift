#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOSSL
import VaultlineCore

/// One connection at the receiver: the handshake, then requests in the order they arrive.
/// Appends happen in this task (in order); commits (fsync, read back, hash, link) and GET
/// streams run as child tasks so that other transfers keep flowing meanwhile.
struct ReceiverSession {
    let server: ReplicaServer
    let channel: any Channel
    let outbound: NIOAsyncChannelOutboundWriter<Frame>
    var logger: Logger

    func run(_ inbound: NIOAsyncChannelInboundStream<Frame>) async throws {
        var frames = inbound.makeAsyncIterator()
        let first: Frame?
        do { first = try await frames.next() } catch {
            try? await refuse(error, requestID: 0)
            throw error
        }
        guard let first else { return }

        // The TLS handshake is complete once a frame has arrived.
        guard let der = try? await channel.nioSSL_peerCertificate().get()?.toDERBytes() else {
            try await refuse(ReplicationError(.forbidden, "no peer certificate"), requestID: 0)
            return
        }
        var log = logger
        log[metadataKey: "subject"] = "\(SiteCertificates.subject(ofCertificateDER: der))"
        guard let role = try? SiteCertificates.role(ofCertificateDER: der) else {
            log.warning("refused: the certificate names no vaultline role")
            try await refuse(ReplicationError(.forbidden, "the certificate names no vaultline role"), requestID: 0)
            return
        }
        guard first.type == .hello else {
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
            log.warning("refused handshake", metadata: ["error": "\(error)"])
            try await refuse(error, requestID: 0)
            return
        }
        log[metadataKey: "repository"] = "\(hello.repositoryID.prefix(16))"
        log.info("connected", metadata: ["role": "\(role)", "client": "\(hello.clientName)"])
        try await outbound.write(.welcome(Welcome(
            version: ProtocolLimits.version, capabilities: 0, role: role, maxFrame: UInt32(ProtocolLimits.maxFrameLength),
            chunkSize: UInt32(ProtocolLimits.chunkSize), maxTransfers: ProtocolLimits.maxTransfers,
            serverName: server.configuration.serverName)))

        var transfers: [UInt32: IncomingFile] = [:]
        defer { for t in transfers.values { repository.endTransfer(t.ref) } }
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                let frame: Frame
                do {
                    guard let next = try await frames.next() else { return }
                    frame = next
                } catch {
                    log.warning("connection-level error", metadata: ["error": "\(error)"])
                    try? await refuse(error, requestID: 0)
                    throw error
                }
                do {
                    try await handle(frame, role: role, repository: repository, transfers: &transfers, group: &group)
                } catch {
                    log.warning("refused request", metadata: ["type": "\(frame.type)", "error": "\(error)"])
                    if let t = transfers.removeValue(forKey: frame.requestID) { repository.endTransfer(t.ref) }
                    try await refuse(error, requestID: frame.requestID)
                }
            }
        }
    }

    private func handle(
        _ frame: Frame, role: SiteRole, repository: ReplicaRepository,
        transfers: inout [UInt32: IncomingFile], group: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        switch frame.type {
        case .summary:
            var b = frame.payload
            let kind = try b.readKind()
            let bits = Int(try b.readInt(UInt8.self, "bits"))
            guard bits <= 16 else { throw ReplicationError(.malformed, "SUMMARY with \(bits) bits") }
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

        case .offer:
            guard role.mayPush else { throw ReplicationError(.forbidden, "role \(role) may not push files") }
            guard !server.store.readOnly else { throw ReplicationError(.forbidden, "this peer serves its repository read-only (for repair); it accepts no files") }
            guard !server.isShuttingDown else { throw ReplicationError(.shuttingDown, "the receiver is stopping; reconnect later") }
            guard transfers[frame.requestID] == nil else { throw ReplicationError(.malformed, "request id \(frame.requestID) is in use") }
            guard transfers.count < Int(ProtocolLimits.maxTransfers) else {
                throw ReplicationError(.busy, "more than \(ProtocolLimits.maxTransfers) transfers at once")
            }
            var b = frame.payload
            let ref = try b.readFileRef()
            let size = Int64(try b.readInt(UInt64.self, "size"))
            guard size >= 0, size <= 1 << 40 else { throw ReplicationError(.malformed, "offered size \(size)") }
            guard let file = try repository.beginTransfer(ref, size: size) else {
                try await outbound.write(Frame(.have, requestID: frame.requestID))
                return
            }
            try await outbound.write(.u64(.accept, UInt64(file.offset), requestID: frame.requestID))
            if file.isComplete { startCommit(file, requestID: frame.requestID, group: &group) } else { transfers[frame.requestID] = file }

        case .data:
            guard let file = transfers[frame.requestID] else {
                throw ReplicationError(.malformed, "DATA for request \(frame.requestID), which is no transfer in progress")
            }
            var b = frame.payload
            let at = Int64(try b.readInt(UInt64.self, "offset"))
            try file.append(b, at: at)
            if file.isComplete {
                transfers[frame.requestID] = nil
                startCommit(file, requestID: frame.requestID, group: &group)
            }

        case .get:
            guard role.mayRead else { throw ReplicationError(.forbidden, "role \(role) may not read files") }
            var b = frame.payload
            let ref = try b.readFileRef()
            let offset = Int64(try b.readInt(UInt64.self, "offset"))
            guard repository.contains(ref) else { throw ReplicationError(.notFound, "no such file here", object: ref.description) }
            let path = repository.path(ref)
            let outbound = self.outbound, allocator = channel.allocator, threadPool = server.threadPool, log = logger
            group.addTask {
                do {
                    try await FileStreamer.stream(path: path, from: offset, requestID: frame.requestID, allocator: allocator, threadPool: threadPool, outbound: outbound)
                } catch {
                    log.warning("GET failed", metadata: ["file": "\(ref)", "error": "\(error)"])
                    try? await outbound.write(.error(Self.wireCode(error), "\(error)", requestID: frame.requestID))
                }
            }

        default:
            throw ReplicationError(.malformed, "a \(frame.type) frame is not a request")
        }
    }

    private func startCommit(_ file: IncomingFile, requestID: UInt32, group: inout ThrowingDiscardingTaskGroup<any Error>) {
        let outbound = self.outbound, threadPool = server.threadPool, log = logger
        group.addTask {
            defer { file.repository.endTransfer(file.ref) }
            do {
                try await threadPool.runIfActive { try file.commit() }
                log.debug("durable", metadata: ["file": "\(file.ref)", "bytes": "\(file.size)"])
                try await outbound.write(Frame(.durable, requestID: requestID))
            } catch {
                log.error("commit refused", metadata: ["file": "\(file.ref)", "error": "\(error)"])
                try? await outbound.write(.error(Self.wireCode(error), "\(error)", requestID: requestID))
            }
        }
    }

    private func refuse(_ error: any Error, requestID: UInt32) async throws {
        try await outbound.write(.error(Self.wireCode(error), "\(error)", requestID: requestID))
    }

    static func wireCode(_ error: any Error) -> ReplicationError.Code {
        guard let e = error as? ReplicationError else { return .io }
        return e.code.rawValue < 100 ? e.code : .io
    }
}
