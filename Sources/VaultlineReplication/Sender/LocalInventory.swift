import Foundation
import VaultlineCore

/// What site A holds: the names of every replicated file, read from the repository folder.
/// Needs no key: names are hashes (the config's is the SHA-256 of its bytes).
public struct LocalInventory: Sendable {
    public let backend: LocalBackend
    public let repositoryID: String
    public private(set) var names: [ReplicatedKind: [Bytes32]] = [:]

    public init(repositoryPath: String) throws {
        backend = LocalBackend(root: repositoryPath)
        let configBytes: [UInt8]
        do { configBytes = try FileSystem.readFile(backend.path(.config, "config")) } catch {
            throw ReplicationError(.notFound, "no repository here (no readable config)", object: repositoryPath, cause: error)
        }
        struct ConfigID: Decodable { var id: String }
        guard let id = try? JSONDecoder().decode(ConfigID.self, from: Data(configBytes)).id, ReplicaStore.isValidRepositoryID(id) else {
            throw ReplicationError(.damagedSource, "the config has no valid repository id", object: repositoryPath + "/config")
        }
        repositoryID = id
        names[.config] = [SHA256.hash(configBytes)]
        for kind in ReplicatedKind.allCases where kind != .config {
            let listed: [String]
            do { listed = try backend.list(kind.fileKind) } catch {
                throw ReplicationError(.io, "cannot list \(kind)", object: repositoryPath, cause: error)
            }
            names[kind] = listed.compactMap { Bytes32(hex: $0) }.sorted()
        }
    }

    public func path(_ ref: FileRef) -> String {
        backend.path(ref.kind.fileKind, ref.kind == .config ? "config" : ref.name.hex)
    }

    public func size(_ ref: FileRef) throws -> Int64 {
        do {
            guard let s = try backend.stat(ref.kind.fileKind, ref.kind == .config ? "config" : ref.name.hex) else {
                throw ReplicationError(.notFound, "vanished from the repository", object: path(ref))
            }
            return s
        } catch let e as ReplicationError { throw e } catch {
            throw ReplicationError(.io, "cannot stat", object: path(ref), cause: error)
        }
    }

    /// The names of `kind` the peer lacks, from its summary and the buckets that differ.
    /// With `exact`, the peer's whole listing is compared instead of the summary.
    public func missing(_ kind: ReplicatedKind, at connection: some ReplicaRequests, exact: Bool = false) async throws -> [Bytes32] {
        let local = names[kind] ?? []
        if exact {
            let remote = try await Self.listBucket(kind, bits: 0, bucket: 0, at: connection)
            return local.filter { !remote.contains($0) }
        }
        let bits = InventorySummary.bits(forCount: local.count)
        let remote = try InventorySummary.decode(
            try await connection.call(.summary(kind, bits: bits, requestID: connection.makeRequestID())))
        let plan = try InventorySummary(names: local, bits: bits).plan(sorted: local, against: remote)
        // The LISTs go out together: on a long link they cost one round trip, not one each.
        return try await withThrowingTaskGroup(of: [Bytes32].self) { group in
            for bucket in plan.bucketsToList {
                group.addTask {
                    let remoteNames = try await Self.listBucket(kind, bits: bits, bucket: bucket, at: connection)
                    return bucketNames(local, bits: bits, bucket: bucket, after: nil, limit: Int.max).names.filter { !remoteNames.contains($0) }
                }
            }
            var missing = plan.missing
            for try await names in group { missing += names }
            return missing.sorted()
        }
    }

    /// ``missing(_:at:exact:)`` for every kind at once (one round trip or two on a long link;
    /// sent with the HELLO, before the WELCOME, by `vaultline replicate`).
    public func missingByKind(at connection: some ReplicaRequests, exact: Bool = false) async throws -> [ReplicatedKind: [Bytes32]] {
        try await withThrowingTaskGroup(of: (ReplicatedKind, [Bytes32]).self) { group in
            for kind in ReplicatedKind.allCases {
                group.addTask { (kind, try await self.missing(kind, at: connection, exact: exact)) }
            }
            var out: [ReplicatedKind: [Bytes32]] = [:]
            for try await (kind, names) in group { out[kind] = names }
            return out
        }
    }

    /// Every name the peer holds in one bucket (paged LIST).
    static func listBucket(_ kind: ReplicatedKind, bits: Int, bucket: Int, at connection: some ReplicaRequests) async throws -> Set<Bytes32> {
        var result = Set<Bytes32>()
        var cursor: Bytes32? = nil
        while true {
            let request = ListRequest(kind: kind, bits: bits, bucket: bucket, cursor: cursor, limit: Int(ProtocolLimits.maxListLimit))
            var reply = try await connection.call(request.encode(requestID: connection.makeRequestID())).payload
            _ = try reply.readKind()
            let more = try reply.readInt(UInt8.self, "more") != 0
            let count = Int(try reply.readInt(UInt32.self, "count"))
            var last: Bytes32? = nil
            for _ in 0..<count {
                let n = try reply.readName("name")
                result.insert(n)
                last = n
            }
            guard more, let last else { return result }
            // A receiver that says "more" must move on: names come in ascending order.
            if let cursor, last <= cursor {
                throw ReplicationError(.malformed, "LIST_REPLY says more names follow but does not advance past its cursor", fromPeer: true)
            }
            cursor = last
        }
    }
}
