import Foundation

/// A tenant that keeps changing, one change at a time, for measuring how soon a continuous
/// backup has each change (`vaultline debug rpo`).
extension Tenant {
    /// One change: the tenant's sequence number after it and the collection it is in (the
    /// key the collection's delta tokens name, see ``GraphSimulator/deltaPosition(_:)``).
    public struct Change: Sendable, Codable, Equatable {
        public var seq: Int
        public var collection: String
        public var kind: String
    }

    /// One ordinary change to a random user's data: a new message in the inbox, a message read
    /// or deleted, a OneDrive file edited. Nil when the chosen user has nothing to change.
    public func changeOne(seed: UInt64) -> Change? {
        state.withLock { s in
            var rng = SimRandom(seed)
            guard !s.users.isEmpty else { return nil }
            let user = s.users[rng.below(s.users.count)]
            let folderIds = s.collections[Self.foldersKey(user.id)]?.live.map(\.id) ?? []
            switch rng.below(4) {
            case 0:
                guard let inbox = folderIds.first else { return nil }
                addMessage(&s, user: user.id, folder: inbox, received: Date(timeIntervalSince1970: 1_780_000_000 + Double(s.seq)), rng: &rng)
                return Change(seq: s.seq, collection: Self.messagesKey(user.id, inbox), kind: "message added")
            case 1, 2:
                let keys = folderIds.map { Self.messagesKey(user.id, $0) }.filter { !(s.collections[$0]?.live.isEmpty ?? true) }
                guard !keys.isEmpty else { return nil }
                let key = keys[rng.below(keys.count)]
                guard let live = s.collections[key]?.live, !live.isEmpty else { return nil }
                let entry = live[rng.below(live.count)]
                s.seq += 1
                if rng.below(2) == 0, case .message(var m) = entry.payload {
                    m.isRead.toggle()
                    m.version += 1
                    s.collections[key]?.upsert(entry.id, seq: s.seq, .message(m))
                    return Change(seq: s.seq, collection: key, kind: "message read")
                }
                s.collections[key]?.delete(entry.id, seq: s.seq)
                return Change(seq: s.seq, collection: key, kind: "message deleted")
            default:
                let key = Self.driveKey(user.driveId)
                let files = (s.collections[key]?.live ?? []).filter { if case .driveItem(let d) = $0.payload { !d.isFolder } else { false } }
                guard !files.isEmpty else { return nil }
                let entry = files[rng.below(files.count)]
                guard case .driveItem(var d) = entry.payload else { return nil }
                s.seq += 1
                d.edit(rng.next(), seq: s.seq)
                s.collections[key]?.upsert(entry.id, seq: s.seq, .driveItem(d))
                return Change(seq: s.seq, collection: key, kind: "file edited")
            }
        }
    }
}

extension GraphSimulator {
    /// What a delta link this simulator issued has served: its collection's key and the
    /// sequence number up to which every change is included. Nil for anything else (a link
    /// in the middle of a round, another server's link).
    public static func deltaPosition(_ link: String) -> (collection: String, seq: Int)? {
        guard let range = link.range(of: "token=", options: .backwards) else { return nil }
        var raw = String(link[range.upperBound...])
        if raw.hasPrefix("'") { raw = String(raw.dropFirst().prefix { $0 != "'" }) }
        raw = String(raw.prefix { $0 != "&" && $0 != ")" })
        guard let data = Data(base64Encoded: unURLSafe(raw)), let token = try? JSONDecoder().decode(DeltaToken.self, from: data),
              token.u == nil, token.o == 0 else { return nil }
        return (token.c, token.b)
    }
}
