import Foundation
import NIOHTTP1
import VaultlineCore

/// One file's upload: an upload session, fragments from the repository, resumed after a cut or
/// a restart from the journal's session URL and Graph's `nextExpectedRanges`.
extension M365Restore {
    /// Uploads `node` as `key`'s last name into folder `parent`; returns what it did.
    func restoreFile(drive: String, parent: String, key: String, node: TreeNode, decision: Decision, journal: RestoreJournal?) async throws -> Decision {
        let name = node.name
        let size = Int64(node.size ?? 0)
        let times = Self.fileTimes(node)
        if size == 0 { return try await uploadEmpty(drive: drive, parent: parent, key: key, node: node, decision: decision, times: times, journal: journal) }

        var decision = decision
        var patchTimesAfter = false
        var session: String?
        if let url = journal?.loaded.sessions[key] { session = url }
        var sessionsMade = 0
        while true {
            if session == nil {
                guard sessionsMade < 3 else { throw GraphError(.exhausted, "no upload session could be completed", url: itemURL(drive: drive, path: [name])) }
                sessionsMade += 1
                try journal?.record("upload", ["path": key])
                switch try await createSession(drive: drive, parent: parent, name: name, decision: decision, times: times) {
                case .url(let url, let withoutTimes):
                    session = url
                    patchTimesAfter = withoutTimes
                    try journal?.record("session", ["path": key, "url": url])
                case .exists:
                    // Someone (or an earlier run whose record was lost) put it there meanwhile.
                    if let there = try await findChild(drive: drive, parent: parent, name: name), !there.isFolder,
                       there.size == size, try backupHash(node) == there.quickXorHash {
                        try journal?.record("done", ["path": key, "id": there.id])
                        return .unchanged
                    }
                    switch options.effectiveCollisions {
                    case .skip: return .skip
                    case .copy: decision = .copy
                    case .replace: decision = .replace
                    }
                    continue
                }
            }
            guard let url = session else { continue }
            switch try await sendFragments(url, node: node, size: size) {
            case .committed(let id):
                if let id, patchTimesAfter { try await patchTimes(drive: drive, id: id, times: times) }
                try journal?.record("done", ["path": key, "id": id ?? ""])
                return decision
            case .gone:
                // The session ended: committed with its answer lost, or expired. Look first.
                if let there = try await findChild(drive: drive, parent: parent, name: name), !there.isFolder,
                   there.size == size, try backupHash(node) == there.quickXorHash {
                    try journal?.record("done", ["path": key, "id": there.id])
                    return decision
                }
                session = nil
            }
        }
    }

    /// A session (and whether it was opened without `fileSystemInfo`, which this tenant
    /// refused), or the name is taken.
    enum SessionAnswer { case url(String, withoutTimes: Bool), exists }
    enum UploadEnd { case committed(String?), gone }

    struct FileTimes {
        var created: String?
        var modified: String?

        var json: JSONValue? {
            var o: [String: JSONValue] = [:]
            if let created { o["createdDateTime"] = .string(created) }
            if let modified { o["lastModifiedDateTime"] = .string(modified) }
            return o.isEmpty ? nil : .object(o)
        }
    }

    /// The file's `fileSystemInfo` times as backed up (else its modification time).
    static func fileTimes(_ node: TreeNode) -> FileTimes {
        var times = FileTimes()
        if let text = node.metadata?["graph.item"], let json = try? JSONValue.parse(Array(text.utf8)) {
            times.created = json["fileSystemInfo"]?["createdDateTime"]?.string
            times.modified = json["fileSystemInfo"]?["lastModifiedDateTime"]?.string ?? json["lastModifiedDateTime"]?.string
        }
        if times.modified == nil, let ns = node.mtimeNs { times.modified = GraphDate.format(Date(timeIntervalSince1970: Double(ns) / 1e9)) }
        return times
    }

    private func conflictBehavior(_ decision: Decision) -> String {
        switch decision {
        case .replace: "replace"
        case .copy: "rename"
        default: "fail"
        }
    }

    private func createSession(drive: String, parent: String, name: String, decision: Decision, times: FileTimes) async throws -> SessionAnswer {
        let url = client.url("drives", drive, "items", parent) + ":/" + GraphClient.encode(name) + ":/createUploadSession"
        var item: [String: JSONValue] = ["@microsoft.graph.conflictBehavior": .string(conflictBehavior(decision)), "name": .string(name)]
        if let info = times.json { item["fileSystemInfo"] = info }
        do {
            let answer = try await client.write(.POST, url, json: .object(["item": .object(item)]), idempotent: true)
            guard let upload = answer.json?["uploadUrl"]?.string else { throw GraphError(.malformed, "an upload session without uploadUrl", url: url) }
            return .url(upload, withoutTimes: false)
        } catch let error as GraphError where error.status == 409 {
            if error.message.contains("upload session") {
                throw GraphError(.http, status: 409, graphCode: error.graphCode, "an upload session left by an interrupted run holds this file until it expires (about 15 minutes): run the restore again then", url: url)
            }
            return .exists
        } catch let error as GraphError where error.status == 400 && item["fileSystemInfo"] != nil && error.message.contains("fileSystemInfo") {
            // Some tenants refuse fileSystemInfo here: upload without, then PATCH it.
            item["fileSystemInfo"] = nil
            let answer = try await client.write(.POST, url, json: .object(["item": .object(item)]), idempotent: true)
            guard let upload = answer.json?["uploadUrl"]?.string else { throw GraphError(.malformed, "an upload session without uploadUrl", url: url) }
            return .url(upload, withoutTimes: true)
        }
    }

    /// Sends the file from where the session stands; the last fragment's answer is the item.
    private func sendFragments(_ url: String, node: TreeNode, size: Int64) async throws -> UploadEnd {
        var offset: Int64
        do {
            let state = try await client.json(url, authorized: false)
            offset = Self.nextExpected(state, size: size) ?? 0
        } catch let error as GraphError where error.code == .notFound || error.status == 401 {
            // Expired, or its URL's own token lapsed (Graph's last 24 hours): a new session.
            return .gone
        }
        var reader = try ContentReader(repository: repository, node: node, from: offset)
        while offset < size {
            let count = Int(min(Int64(options.fragmentSize), size - offset))
            let bytes = try reader.read(count)
            guard bytes.count == count else { throw VaultlineError(.corrupt, "the stored file is shorter than its size", object: node.name) }
            let range = "bytes \(offset)-\(offset + Int64(count) - 1)/\(size)"
            let answer: GraphResponse
            do {
                answer = try await client.write(.PUT, url, bytes: bytes, headers: [("Content-Range", range)], authorized: false, idempotent: true)
            } catch let error as GraphError where error.code == .notFound || error.status == 401 {
                return .gone
            } catch let error as GraphError where error.status == 416 {
                // Graph has a different part than this one (a fragment stored whose answer was
                // lost): go on from what it expects.
                guard let state = try? await client.json(url, authorized: false), let expected = Self.nextExpected(state, size: size) else { return .gone }
                offset = expected
                reader = try ContentReader(repository: repository, node: node, from: offset)
                continue
            }
            offset += Int64(count)
            advance(bytes: Int64(count))
            if answer.status == 200 || answer.status == 201 { return .committed(answer.json?["id"]?.string) }
            if let expected = answer.json.flatMap({ Self.nextExpected($0, size: size) }), expected != offset {
                offset = expected
                reader = try ContentReader(repository: repository, node: node, from: offset)
            }
        }
        return .gone
    }

    /// Where Graph expects the next fragment. Nil when the answer names no offset, or one outside
    /// the file (Graph's answer is checked before a reader is placed there).
    static func nextExpected(_ state: JSONValue, size: Int64) -> Int64? {
        guard let first = state["nextExpectedRanges"]?.array?.first?.string,
              let offset = Int64(first.split(separator: "-", omittingEmptySubsequences: false).first ?? ""),
              offset >= 0, offset <= size else { return nil }
        return offset
    }

    /// A file of no bytes: Graph's upload sessions take no empty fragment, so a simple PUT.
    private func uploadEmpty(drive: String, parent: String, key: String, node: TreeNode, decision: Decision, times: FileTimes, journal: RestoreJournal?) async throws -> Decision {
        let url = client.url("drives", drive, "items", parent) + ":/" + GraphClient.encode(node.name) + ":/content?@microsoft.graph.conflictBehavior=" + conflictBehavior(decision)
        try journal?.record("upload", ["path": key])
        let answer: GraphResponse
        do {
            answer = try await client.write(.PUT, url, bytes: [], idempotent: true)
        } catch let error as GraphError where error.status == 409 {
            return options.effectiveCollisions == .skip ? .skip : decision
        }
        if let id = answer.json?["id"]?.string { try await patchTimes(drive: drive, id: id, times: times) }
        try journal?.record("done", ["path": key, "id": answer.json?["id"]?.string ?? ""])
        return decision
    }

    private func patchTimes(drive: String, id: String, times: FileTimes) async throws {
        guard let info = times.json else { return }
        _ = try await client.write(.PATCH, client.url("drives", drive, "items", id), json: .object(["fileSystemInfo": info]), idempotent: true)
    }
}

/// A stored file's bytes, blob by blob, from an offset.
struct ContentReader {
    let repository: Repository
    let opener: BlobOpener
    private var ids: ArraySlice<String>
    private var pending: [UInt8] = []
    private var pendingStart = 0

    init(repository: Repository, node: TreeNode, from offset: Int64) throws {
        self.repository = repository
        opener = BlobOpener(key: repository.key)
        ids = (node.content ?? [])[...]
        var skip = offset
        while skip > 0 {
            try fill()
            guard pending.count > pendingStart else { break }
            let n = Int(min(Int64(pending.count - pendingStart), skip))
            pendingStart += n
            skip -= Int64(n)
        }
    }

    private mutating func fill() throws {
        guard pending.count == pendingStart, let id = ids.popFirst() else { return }
        guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree") }
        pending = try repository.readBlob(blob, using: opener)
        pendingStart = 0
    }

    /// Up to `count` bytes (fewer only at the end).
    mutating func read(_ count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            try fill()
            guard pending.count > pendingStart else { break }
            let n = min(pending.count - pendingStart, count - out.count)
            out += pending[pendingStart..<(pendingStart + n)]
            pendingStart += n
        }
        return out
    }
}
