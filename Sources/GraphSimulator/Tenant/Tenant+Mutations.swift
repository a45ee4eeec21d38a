import Foundation

/// Changes between backups: what users do to their data, and what ransomware does to it.
extension Tenant {
    public struct MutationSummary: Sendable, Codable, Equatable {
        public var added = 0
        public var modified = 0
        public var moved = 0
        public var deleted = 0
        public var encrypted = 0
    }

    /// A mix of ordinary changes touching about `share` of all items (at least one of each kind):
    /// new, modified, moved and deleted messages; edited, renamed and deleted files; changed and
    /// deleted events and contacts.
    @discardableResult
    public func mutate(seed: UInt64, share: Double) -> MutationSummary {
        state.withLock { s in
            var rng = SimRandom(seed)
            var sum = MutationSummary()
            for user in s.users {
                // Mail.
                let folderIds = s.collections[Self.foldersKey(user.id)]?.live.map(\.id) ?? []
                let messageKeys = folderIds.map { Self.messagesKey(user.id, $0) }
                let all = messageKeys.flatMap { k in (s.collections[k]?.live ?? []).map { (k, $0) } }
                let n = max(1, Int(Double(all.count) * share))
                for _ in 0..<n {
                    addMessage(&s, user: user.id, folder: folderIds[0], received: Date(timeIntervalSince1970: 1_780_000_000 + Double(s.seq)), rng: &rng)
                    sum.added += 1
                }
                for (i, (key, e)) in all.shuffled(using: &rng).prefix(3 * n).enumerated() {
                    guard case .message(var m) = e.payload else { continue }
                    s.seq += 1
                    switch i % 3 {
                    case 0:
                        m.isRead.toggle()
                        m.version += 1
                        s.collections[key]?.upsert(e.id, seq: s.seq, .message(m))
                        sum.modified += 1
                    case 1:
                        // A move gives the message a new id in its new folder, as Exchange does.
                        let target = folderIds[rng.below(folderIds.count)]
                        guard target != m.folderId else { continue }
                        s.collections[key]?.delete(e.id, seq: s.seq)
                        m.folderId = target
                        let id = Self.makeId(&s, prefix: [0x00, 0x4D])
                        s.seq += 1
                        s.messageKeys[id] = Self.messagesKey(user.id, target)
                        s.collections[Self.messagesKey(user.id, target), default: Collection()].upsert(id, seq: s.seq, .message(m))
                        sum.moved += 1
                    default:
                        s.collections[key]?.delete(e.id, seq: s.seq)
                        sum.deleted += 1
                    }
                }
                // Calendar and contacts.
                let calendars = (s.otherCalendars[user.id] ?? []).map { Self.calendarKey(user.id, $0.id) }
                for key in [Self.eventsKey(user.id), Self.contactsKey(user.id)] + calendars {
                    let live = s.collections[key]?.live ?? []
                    for (i, e) in live.shuffled(using: &rng).prefix(max(1, Int(Double(live.count) * share)) * 2).enumerated() {
                        s.seq += 1
                        if i % 2 == 1 { s.collections[key]?.delete(e.id, seq: s.seq); sum.deleted += 1; continue }
                        switch e.payload {
                        case .event(var x): x.version += 1; x.location = "Room \(200 + rng.below(40))"; s.collections[key]?.upsert(e.id, seq: s.seq, .event(x))
                        case .contact(var x): x.version += 1; x.phone = "+1 555 \(1000 + rng.below(9000))"; s.collections[key]?.upsert(e.id, seq: s.seq, .contact(x))
                        default: break
                        }
                        sum.modified += 1
                    }
                }
                sum = mutateDrive(&s, drive: user.driveId, share: share, rng: &rng, sum)
            }
            for site in s.sites { for d in site.driveIds { sum = mutateDrive(&s, drive: d, share: share, rng: &rng, sum) } }
            return sum
        }
    }

    /// A new version of one drive file (its content edited, as a user saving it does).
    public func editFile(drive: String, id: String) {
        state.withLock { s in
            let key = Self.driveKey(drive)
            guard let e = s.collections[key]?.entries[id], e.deleted == nil, case .driveItem(var d) = e.payload, !d.isFolder else { return }
            s.seq += 1
            d.edit(UInt64(s.seq), seq: s.seq)
            s.collections[key]?.upsert(id, seq: s.seq, .driveItem(d))
        }
    }

    private func mutateDrive(_ s: inout State, drive: String, share: Double, rng: inout SimRandom, _ before: MutationSummary) -> MutationSummary {
        var sum = before
        let key = Self.driveKey(drive)
        let items = s.collections[key]?.live ?? []
        let files = items.filter { if case .driveItem(let d) = $0.payload { !d.isFolder } else { false } }
        let folders = items.filter { if case .driveItem(let d) = $0.payload { d.isFolder } else { false } }
        let n = max(1, Int(Double(files.count) * share))
        for (i, e) in files.shuffled(using: &rng).prefix(3 * n).enumerated() {
            guard case .driveItem(var d) = e.payload else { continue }
            s.seq += 1
            switch i % 3 {
            case 0:
                d.edit(rng.next(), seq: s.seq)
                s.collections[key]?.upsert(e.id, seq: s.seq, .driveItem(d))
                sum.modified += 1
            case 1:
                d.name = "renamed-" + d.name
                d.parentId = folders[rng.below(folders.count)].id
                s.collections[key]?.upsert(e.id, seq: s.seq, .driveItem(d))
                sum.moved += 1
            default:
                s.collections[key]?.delete(e.id, seq: s.seq)
                sum.deleted += 1
            }
        }
        let parent = folders.first { if case .driveItem(let d) = $0.payload { d.parentId == nil } else { false } }?.id
        if let parent {
            addFile(&s, drive: drive, parent: parent, name: "new-\(s.seq).txt", size: Int64(spec.minFileSize + rng.below(64 << 10)), content: .generated(seed: rng.next(), edits: []))
            sum.added += 1
        }
        return sum
    }

    /// Ransomware: encrypts `share` of one user's OneDrive files in place (same names, same
    /// sizes, incompressible content).
    @discardableResult
    public func ransomware(upn: String, share: Double, seed: UInt64 = 666) -> MutationSummary {
        guard let u = user(upn) else { return MutationSummary() }
        return state.withLock { s in
            var rng = SimRandom(seed)
            var sum = MutationSummary()
            let key = Self.driveKey(u.driveId)
            let files = (s.collections[key]?.live ?? []).filter { if case .driveItem(let d) = $0.payload { !d.isFolder } else { false } }
            for e in files.shuffled(using: &rng).prefix(Int((Double(files.count) * share).rounded(.up))) {
                guard case .driveItem(var d) = e.payload else { continue }
                s.seq += 1
                d.content = .encrypted(seed: rng.next())
                d.version += 1
                s.collections[key]?.upsert(e.id, seq: s.seq, .driveItem(d))
                sum.encrypted += 1
            }
            return sum
        }
    }

    /// Deletes one message (for tests of deletions and of 404 between listing and download).
    public func deleteMessage(upn: String, id: String) {
        guard let u = user(upn) else { return }
        state.withLock { s in
            for key in s.collections.keys where key.hasPrefix("u/\(u.id)/f/") && s.collections[key]?.entries[id] != nil {
                s.seq += 1
                s.collections[key]?.delete(id, seq: s.seq)
            }
        }
    }
}
