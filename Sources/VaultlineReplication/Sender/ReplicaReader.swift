import NIOCore
import NIOPosix
import VaultlineCore

/// Reads files from a peer with the GET verb (scrub repair fetches good copies this way).
/// Every file is verified against its name before it is returned.
public enum ReplicaReader {
    /// Largest file a fetch holds in memory (packs are 16 MiB by default and at most a little over 1 GiB).
    public static let maxFetchSize = 1 << 31

    public static func fetch(
        _ ref: FileRef, repositoryID: String, host: String, port: Int, identity: SiteIdentity, clientName: String = FileSystem.hostName()
    ) async throws -> [UInt8] {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        return try await ReplicaConnection.with(
            host: host, port: port, identity: identity, repositoryID: repositoryID, clientName: clientName, group: group
        ) { connection in try await fetch(ref, over: connection) }
    }

    static func fetch(_ ref: FileRef, over connection: ReplicaConnection) async throws -> [UInt8] {
        let id = connection.makeRequestID()
        let answers = try await connection.send(.get(ref, offset: 0, requestID: id))
        defer { connection.finish(id) }
        var it = answers.makeAsyncIterator()
        guard let first = try await it.next() else { throw ReplicationError(.connection, "connection closed", object: ref.description) }
        if first.type == .error {
            var e = first.decodeError()
            e.object = ref.description
            throw e
        }
        guard first.type == .file else { throw ReplicationError(.malformed, "unexpected \(first.type) answer to GET", object: ref.description) }
        // The file is held in memory: a size is believed only up to the reader's bound, and
        // memory grows with what arrives, not with what the peer announced.
        let size = Int(try first.decodeFileOffset())
        guard size <= maxFetchSize else {
            throw ReplicationError(.malformed, "the peer announces \(size) bytes, more than the \(maxFetchSize) a fetch holds", object: ref.description)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(size, 16 << 20))
        while bytes.count < size {
            guard let frame = try await it.next() else { throw ReplicationError(.connection, "connection closed mid-file", object: ref.description) }
            if frame.type == .error { throw frame.decodeError() }
            var payload = frame.payload
            guard frame.type == .data, try payload.readInt(UInt64.self, "offset") == UInt64(bytes.count),
                payload.readableBytes <= size - bytes.count
            else { throw ReplicationError(.malformed, "DATA out of order", object: ref.description) }
            bytes += payload.readableBytesView
        }
        let digest = SHA256.hash(bytes)
        guard digest == ref.name else {
            throw ReplicationError(.hashMismatch, "the peer's copy hashes to \(digest.hex)", object: ref.description)
        }
        return bytes
    }
}
