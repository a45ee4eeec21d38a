import Crypto
import Foundation
import QuickXorHash

/// What a client can do to a drive (a restore): look items up by path, list children, create
/// folders, commit uploads, delete. Names are matched without regard to case, as OneDrive does.
extension Tenant {
    /// `@microsoft.graph.conflictBehavior`.
    enum ConflictBehavior: String, Sendable {
        case fail, replace, rename
    }

    enum DriveWriteError: Error, Equatable {
        case notFound
        /// 409 `nameAlreadyExists`.
        case nameExists
        case notAFolder
        /// 507 `quotaLimitReached`: the drive would hold more than its quota.
        case quotaExceeded
    }

    /// An upload's content as the drive keeps it: its bytes, or only their size and digests.
    enum UploadedContent: Sendable {
        case bytes([UInt8])
        case digest(size: Int64, sha256: String, quickXorHash: String)

        var size: Int64 {
            switch self {
            case .bytes(let b): Int64(b.count)
            case .digest(let size, _, _): size
            }
        }

        var content: FileContent {
            switch self {
            case .bytes(let b): .uploaded(b)
            case .digest(_, let sha, let qx): .received(sha256: sha, quickXorHash: qx)
            }
        }
    }

    /// Bytes of a drive's live files.
    func driveUsedBytes(_ drive: String) -> Int64 {
        (collection(Self.driveKey(drive))?.live ?? []).reduce(0) { total, e in
            if case .driveItem(let d) = e.payload, !d.isFolder { return total + d.size }
            return total
        }
    }

    /// The root folder's id of a drive.
    func driveRoot(_ drive: String) -> String? {
        collection(Self.driveKey(drive))?.live.first { e in
            if case .driveItem(let d) = e.payload { d.parentId == nil } else { false }
        }?.id
    }

    /// The live children of a folder, in creation order.
    func driveChildren(_ drive: String, of parent: String) -> [Entry] {
        (collection(Self.driveKey(drive))?.live ?? []).filter { e in
            if case .driveItem(let d) = e.payload { d.parentId == parent } else { false }
        }
    }

    /// The item at `names` below `base` (the root when nil): the id, or nil when any part is missing.
    func driveItem(_ drive: String, below base: String?, names: [String]) -> String? {
        guard var at = base ?? driveRoot(drive) else { return nil }
        guard let e = entry(Self.driveKey(drive), at), e.deleted == nil else { return nil }
        for name in names {
            guard let child = child(drive, of: at, named: name) else { return nil }
            at = child.id
        }
        return at
    }

    private func child(_ drive: String, of parent: String, named name: String) -> Entry? {
        driveChildren(drive, of: parent).first { e in
            if case .driveItem(let d) = e.payload { d.name.caseInsensitiveCompare(name) == .orderedSame } else { false }
        }
    }

    /// Creates folder `name` in `parent`; returns its id and whether it is new.
    func createDriveFolder(_ drive: String, parent: String, name: String, conflict: ConflictBehavior) -> Result<(id: String, created: Bool), DriveWriteError> {
        guard let p = entry(Self.driveKey(drive), parent), p.deleted == nil else { return .failure(.notFound) }
        guard case .driveItem(let folder) = p.payload, folder.isFolder else { return .failure(.notAFolder) }
        var name = name
        if let existing = child(drive, of: parent, named: name) {
            switch conflict {
            case .fail: return .failure(.nameExists)
            case .replace:
                // Graph answers a folder "replace" with the folder that is there.
                if case .driveItem(let d) = existing.payload, d.isFolder { return .success((existing.id, false)) }
                return .failure(.nameExists)
            case .rename: name = freeName(drive, parent: parent, like: name)
            }
        }
        let id: String = state.withLock { s in
            let id = Self.makeId(&s, prefix: [0x46])
            s.seq += 1
            s.collections[Self.driveKey(drive)]?.upsert(id, seq: s.seq, .driveItem(DriveItem(
                name: name, parentId: parent, isFolder: true, size: 0, content: .none, version: 1, modified: Date())))
            return id
        }
        return .success((id, true))
    }

    /// Commits an uploaded file as `name` in `parent`, by the conflict behaviour; returns its id.
    /// A replaced file keeps its id and gets a new version.
    func commitDriveFile(_ drive: String, parent: String, name: String, bytes: [UInt8], conflict: ConflictBehavior,
                         created: Date?, modified: Date?, quota: Int64 = 0) -> Result<String, DriveWriteError> {
        commitDriveFile(drive, parent: parent, name: name, content: .bytes(bytes), conflict: conflict, created: created, modified: modified, quota: quota)
    }

    func commitDriveFile(_ drive: String, parent: String, name: String, content: UploadedContent, conflict: ConflictBehavior,
                         created: Date?, modified: Date?, quota: Int64 = 0) -> Result<String, DriveWriteError> {
        guard let p = entry(Self.driveKey(drive), parent), p.deleted == nil else { return .failure(.notFound) }
        guard case .driveItem(let folder) = p.payload, folder.isFolder else { return .failure(.notAFolder) }
        var name = name
        var replacing: Entry?
        if let existing = child(drive, of: parent, named: name) {
            switch conflict {
            case .fail: return .failure(.nameExists)
            case .replace:
                guard case .driveItem(let d) = existing.payload, !d.isFolder else { return .failure(.nameExists) }
                replacing = existing
            case .rename: name = freeName(drive, parent: parent, like: name)
            }
        }
        if quota > 0 {
            var replaced: Int64 = 0
            if let replacing, case .driveItem(let old) = replacing.payload { replaced = old.size }
            if driveUsedBytes(drive) - replaced + content.size > quota { return .failure(.quotaExceeded) }
        }
        return .success(state.withLock { s in
            s.seq += 1
            var item = DriveItem(name: name, parentId: parent, isFolder: false, size: content.size, content: content.content,
                                 version: 1, modified: modified ?? Date(), created: created)
            if let replacing, case .driveItem(let old) = replacing.payload {
                item.name = old.name
                item.version = old.version + 1
                s.collections[Self.driveKey(drive)]?.upsert(replacing.id, seq: s.seq, .driveItem(item))
                return replacing.id
            }
            let id = Self.makeId(&s, prefix: [0x46, 0x49])
            s.collections[Self.driveKey(drive)]?.upsert(id, seq: s.seq, .driveItem(item))
            return id
        })
    }

    /// Sets a file's `fileSystemInfo` times (PATCH).
    func setDriveTimes(_ drive: String, id: String, created: Date?, modified: Date?) -> Bool {
        state.withLock { s in
            guard let e = s.collections[Self.driveKey(drive)]?.entries[id], e.deleted == nil, case .driveItem(var d) = e.payload else { return false }
            if let created { d.created = created }
            if let modified { d.modified = modified }
            s.seq += 1
            s.collections[Self.driveKey(drive)]?.upsert(id, seq: s.seq, .driveItem(d))
            return true
        }
    }

    /// Deletes a drive item (and, for a folder, everything in it).
    func deleteDriveItem(_ drive: String, id: String) -> Bool {
        guard let e = entry(Self.driveKey(drive), id), e.deleted == nil else { return false }
        for child in driveChildren(drive, of: id) { _ = deleteDriveItem(drive, id: child.id) }
        state.withLock { s in
            s.seq += 1
            s.collections[Self.driveKey(drive)]?.delete(id, seq: s.seq)
        }
        return true
    }

    /// Deletes the file at `path` of a user's OneDrive (a user emptying it, for tests and the demo).
    @discardableResult
    public func deleteFile(upn: String, path: String) -> Bool {
        guard let u = user(upn), let id = driveItem(u.driveId, below: nil, names: path.split(separator: "/").map(String.init)) else { return false }
        return deleteDriveItem(u.driveId, id: id)
    }

    /// "name 1.ext", "name 2.ext", …: the first not taken in `parent`.
    private func freeName(_ drive: String, parent: String, like name: String) -> String {
        let dot = name.lastIndex(of: ".").flatMap { $0 == name.startIndex ? nil : $0 }
        let stem = dot.map { String(name[..<$0]) } ?? name
        let ext = dot.map { String(name[$0...]) } ?? ""
        var n = 1
        while child(drive, of: parent, named: "\(stem) \(n)\(ext)") != nil { n += 1 }
        return "\(stem) \(n)\(ext)"
    }

    /// A file's QuickXorHash (base64), made once per version.
    func quickXorHash(_ item: DriveItem, id: String) -> String {
        if case .received(_, let known) = item.content { return known }
        let key = "\(id)|\(item.version)"
        if let known = hashCache.withLock({ $0[key] }) { return known }
        var hash = QuickXorHash()
        var offset: Int64 = 0
        while offset < item.size {
            let n = Int(min(1 << 20, item.size - offset))
            hash.update(fileBytes(item, offset: offset, length: n))
            offset += Int64(n)
        }
        let value = hash.base64()
        hashCache.withLock { $0[key] = value }
        return value
    }

    /// Size and SHA-256 (hex) of every live file of a user's OneDrive, by path, read a MiB at a
    /// time (a 5 GB file is never held): what a restore of large files is checked against.
    public func driveFileDigests(upn: String) -> [String: (size: Int64, sha256: String)] {
        guard let u = user(upn) else { return [:] }
        var out: [String: (size: Int64, sha256: String)] = [:]
        for (path, file) in driveFilesByPath(u.driveId) {
            if case .received(let sha, _) = file.item.content {
                out[path] = (file.item.size, sha)
                continue
            }
            var hash = SHA256()
            var offset: Int64 = 0
            while offset < file.item.size {
                let n = Int(min(1 << 20, file.item.size - offset))
                hash.update(data: fileBytes(file.item, offset: offset, length: n))
                offset += Int64(n)
            }
            out[path] = (file.item.size, hash.finalize().map { String(format: "%02x", $0) }.joined())
        }
        return out
    }
}
