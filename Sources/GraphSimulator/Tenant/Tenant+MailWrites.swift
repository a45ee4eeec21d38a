import Foundation

/// What a client can do to a mailbox (a restore): create folders and messages, add attachments,
/// delete; and how created messages look when read back (JSON and MIME), as Exchange keeps them.
extension Tenant {
    /// Well-known folder names (locale-independent in Graph) and the display names of this
    /// tenant's folders they stand for.
    static let wellKnownFolders = ["inbox": "Inbox", "sentitems": "Sent Items", "archive": "Archive", "drafts": "Drafts", "deleteditems": "Deleted Items"]

    /// A folder id, or a well-known name, or `msgfolderroot` (nil: the root).
    /// Returns nil when there is no such folder; `.some(nil)` for the root.
    func mailFolder(user: User, _ idOrName: String) -> String?? {
        if idOrName.lowercased() == "msgfolderroot" { return .some(nil) }
        let folders = collection(Self.foldersKey(user.id))?.live ?? []
        if folders.contains(where: { $0.id == idOrName }) { return .some(idOrName) }
        guard let display = Self.wellKnownFolders[idOrName.lowercased()] else { return nil }
        return folders.first { e in
            if case .folder(let f) = e.payload { f.parentFolderId == nil && f.displayName == display } else { false }
        }.map { .some($0.id) }
    }

    /// Child folders of `parent` (nil: the top level).
    func mailFolders(user: User, parent: String?) -> [(id: String, folder: MailFolder)] {
        (collection(Self.foldersKey(user.id))?.live ?? []).compactMap { e in
            if case .folder(let f) = e.payload, f.parentFolderId == parent { (e.id, f) } else { nil }
        }
    }

    /// Creates a folder; nil when a sibling has that name (Exchange: 409 ErrorFolderExists).
    func createMailFolder(user: User, parent: String?, name: String) -> String? {
        if mailFolders(user: user, parent: parent).contains(where: { $0.folder.displayName.caseInsensitiveCompare(name) == .orderedSame }) { return nil }
        return state.withLock { s in
            let id = Self.makeId(&s, prefix: [0x00, 0x2E])
            s.seq += 1
            s.collections[Self.foldersKey(user.id), default: Collection()].upsert(id, seq: s.seq, .folder(MailFolder(displayName: name, parentFolderId: parent)))
            return id
        }
    }

    /// Stores a created message in `folder`; returns its id.
    func createMessage(user: User, folder: String, subject: String, isRead: Bool, _ r: RestoredMessage, received: Date) -> String {
        state.withLock { s in
            let id = Self.makeId(&s, prefix: [0x00, 0x4D])
            s.seq += 1
            s.messageKeys[id] = Self.messagesKey(user.id, folder)
            let m = Message(folderId: folder, subject: subject, fromName: r.from?.name ?? "", fromAddress: r.from?.address ?? "",
                            to: r.to.map(\.address), received: received, isRead: isRead, bodySeed: 0, attachment: nil, version: 1, restored: r)
            s.collections[Self.messagesKey(user.id, folder), default: Collection()].upsert(id, seq: s.seq, .message(m))
            return id
        }
    }

    /// Changes a message (its read state, an attachment added, a property set).
    @discardableResult
    func updateMessage(user: User, id: String, _ change: (inout Message) -> Void) -> Message? {
        state.withLock { s in
            guard let key = s.messageKeys[id], key.hasPrefix("u/\(user.id)/f/"), let e = s.collections[key]?.entries[id], e.deleted == nil,
                  case .message(var m) = e.payload else { return nil }
            change(&m)
            m.version += 1
            s.seq += 1
            s.collections[key]?.upsert(id, seq: s.seq, .message(m))
            return m
        }
    }

    /// The live messages of a folder.
    func folderMessages(user: User, folder: String) -> [(id: String, message: Message)] {
        (collection(Self.messagesKey(user.id, folder))?.live ?? []).compactMap { e in
            if case .message(let m) = e.payload { (e.id, m) } else { nil }
        }
    }

    /// Deletes every message of a folder (a user emptying it); returns how many.
    @discardableResult
    public func emptyFolder(upn: String, displayName: String) -> Int {
        guard let u = user(upn), let folder = mailFolders(user: u, parent: nil).first(where: { $0.folder.displayName == displayName }) else { return 0 }
        let ids = folderMessages(user: u, folder: folder.id).map(\.id)
        for id in ids { deleteMessage(upn: upn, id: id) }
        return ids.count
    }

    // MARK: Reading created messages back

    func restoredJSON(id: String, _ m: Message, _ r: RestoredMessage, body: Bool) -> [String: Any] {
        let changeKey = Self.changeKey(id, "\(m.version)|\(m.isRead)")
        func list(_ rs: [RestoredMessage.Recipient]) -> [[String: Any]] { rs.map { ["emailAddress": ["name": $0.name, "address": $0.address]] } }
        var json: [String: Any] = [
            "@odata.type": "#microsoft.graph.message", "@odata.etag": "W/\"\(changeKey)\"", "id": id, "changeKey": changeKey,
            "createdDateTime": Self.iso(r.created), "lastModifiedDateTime": Self.iso(r.created),
            "receivedDateTime": Self.iso(m.received), "sentDateTime": Self.iso(r.sent),
            "hasAttachments": r.attachments.contains { !$0.isInline }, "internetMessageId": r.internetMessageId,
            "subject": m.subject, "importance": r.importance, "parentFolderId": m.folderId,
            "conversationId": Data("conv-\(m.subject.prefix(12))".utf8).base64EncodedString(),
            "isRead": m.isRead, "isDraft": r.isDraft,
            "toRecipients": list(r.to), "ccRecipients": list(r.cc), "bccRecipients": list(r.bcc), "replyTo": list(r.replyTo),
            "categories": r.categories, "flag": ["flagStatus": r.flagStatus ?? "notFlagged"],
        ]
        if let from = r.from {
            json["from"] = ["emailAddress": ["name": from.name, "address": from.address]]
            json["sender"] = json["from"]
        }
        if body {
            json["body"] = ["contentType": r.bodyIsHTML ? "html" : "text", "content": r.body]
            json["bodyPreview"] = String(r.body.prefix(255))
        }
        return json
    }

    /// The MIME Exchange would export for a created message: its headers, body and attachments.
    func restoredMIME(id: String, _ m: Message, _ r: RestoredMessage) -> [UInt8] {
        func word(_ s: String) -> String { s.utf8.allSatisfy { $0 >= 32 && $0 < 127 } ? s : "=?utf-8?B?\(Data(s.utf8).base64EncodedString())?=" }
        func addresses(_ rs: [RestoredMessage.Recipient]) -> String {
            rs.map { $0.name.isEmpty ? $0.address : "\"\(word($0.name).replacingOccurrences(of: "\"", with: "\\\""))\" <\($0.address)>" }.joined(separator: ", ")
        }
        func lines(_ b: [UInt8]) -> String { Data(b).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed]) }
        var head: [String] = []
        if let from = r.from { head.append("From: " + addresses([from])) }
        if !r.to.isEmpty { head.append("To: " + addresses(r.to)) }
        if !r.cc.isEmpty { head.append("Cc: " + addresses(r.cc)) }
        if !r.replyTo.isEmpty { head.append("Reply-To: " + addresses(r.replyTo)) }
        head += ["Subject: " + word(m.subject), "Date: " + Self.rfc5322(r.sent), "Message-ID: " + r.internetMessageId, "MIME-Version: 1.0"]
        head += r.headers.map { "\($0.name): \($0.value)" }
        let boundary = "----=_Restored_\(id.utf8.reduce(UInt64(5381)) { $0 &* 33 &+ UInt64($1) })"
        var parts = ["Content-Type: text/\(r.bodyIsHTML ? "html" : "plain"); charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(Array(r.body.utf8))]
        for a in r.attachments {
            if let subject = a.itemSubject {
                parts.append("Content-Type: message/rfc822\r\n\r\nSubject: \(word(subject))\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines(a.bytes))
                continue
            }
            var p = "Content-Type: \(a.contentType); name=\"\(word(a.name))\"\r\nContent-Disposition: \(a.isInline ? "inline" : "attachment"); filename=\"\(word(a.name))\"\r\n"
            if let cid = a.contentID { p += "Content-ID: <\(cid)>\r\n" }
            parts.append(p + "Content-Transfer-Encoding: base64\r\n\r\n" + lines(a.bytes))
        }
        head.append("Content-Type: multipart/mixed; boundary=\"\(boundary)\"")
        let text = head.joined(separator: "\r\n") + "\r\n\r\n" + parts.map { "--\(boundary)\r\n" + $0 + "\r\n" }.joined() + "--\(boundary)--\r\n"
        return Array(text.utf8)
    }
}
