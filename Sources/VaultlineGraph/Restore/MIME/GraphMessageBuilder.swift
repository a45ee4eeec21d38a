import Foundation

/// Turns a stored message (its MIME, and the Graph JSON backed up with it) into what Graph takes
/// to create it as a sent or received message rather than a draft (docs/GRAPH.md, "Mail"): the
/// message's JSON with the MAPI properties that set its flags and dates, and its attachments.
public struct GraphMessageBuilder: Sendable {
    /// An attachment as Graph takes it.
    public struct Attachment: Sendable, Equatable {
        public var name: String
        public var contentType: String
        public var bytes: [UInt8]
        public var contentID: String?
        public var isInline: Bool
        /// A `message/rfc822` part: the attached message's JSON (an item attachment).
        public var item: JSONValue?

        /// The attachment's JSON for `POST …/attachments` or inside a message.
        public var json: JSONValue {
            if let item {
                return .object(["@odata.type": .string("#microsoft.graph.itemAttachment"), "name": .string(name), "item": item])
            }
            var o: [String: JSONValue] = [
                "@odata.type": .string("#microsoft.graph.fileAttachment"), "name": .string(name),
                "contentType": .string(contentType), "contentBytes": .string(Data(bytes).base64EncodedString()),
                "isInline": .bool(isInline),
            ]
            if let contentID { o["contentId"] = .string(contentID) }
            return .object(o)
        }
    }

    /// The named property that carries a restore key: `String {GUID} Name VaultlineRestoreKey`.
    public static let restoreKeyProperty = "String {6f8e2c1a-5b7d-4e3f-9a21-0c4d8b6e7f10} Name VaultlineRestoreKey"
    /// PidTagMessageFlags, PidTagClientSubmitTime, PidTagMessageDeliveryTime.
    public static let flagsProperty = "Integer 0x0E07"
    public static let sentProperty = "SystemTime 0x0039"
    public static let receivedProperty = "SystemTime 0x0E06"

    public var message: JSONValue
    public var attachments: [Attachment]

    /// `mime`: the stored message; `item`: the Graph JSON stored beside it (read state, flag,
    /// categories, importance, received time); `restoreKey`: stamped as a named property.
    public init(mime: [UInt8], item: JSONValue?, restoreKey: String?) {
        let entity = MIMEEntity.parse(mime)
        var o = Self.fields(entity)
        var body: (html: Bool, text: String)?
        var attachments: [Attachment] = []
        Self.walk(entity, body: &body, attachments: &attachments)
        o["body"] = .object(["contentType": .string(body?.html == true ? "html" : "text"), "content": .string(body?.text ?? "")])

        if let item {
            if let read = item["isRead"]?.bool { o["isRead"] = .bool(read) }
            if let importance = item["importance"]?.string { o["importance"] = .string(importance) }
            if let categories = item["categories"]?.array { o["categories"] = .array(categories) }
            if let flag = item["flag"], flag.object != nil { o["flag"] = flag }
            if o["subject"] == nil, let subject = item["subject"]?.string { o["subject"] = .string(subject) }
            if o["internetMessageId"] == nil, let id = item["internetMessageId"]?.string { o["internetMessageId"] = .string(id) }
        }
        // Exchange's own submit time when the backup has it: a Date header is the sender's clock
        // (often seconds off, sometimes missing or malformed).
        let sent = item?["sentDateTime"]?.string.flatMap { GraphDate.parse($0) } ?? entity.header("Date").flatMap(MIMEHeader.date)
        let received = item?["receivedDateTime"]?.string.flatMap { GraphDate.parse($0) } ?? sent
        // 4 (mfSubmitted) leaves mfUnsent clear: not a draft; read state goes in isRead.
        var properties: [JSONValue] = [.object(["id": .string(Self.flagsProperty), "value": .string("4")])]
        if let sent { properties.append(.object(["id": .string(Self.sentProperty), "value": .string(GraphDate.format(sent))])) }
        if let received { properties.append(.object(["id": .string(Self.receivedProperty), "value": .string(GraphDate.format(received))])) }
        if let restoreKey { properties.append(.object(["id": .string(Self.restoreKeyProperty), "value": .string(restoreKey)])) }
        o["singleValueExtendedProperties"] = .array(properties)
        message = .object(o)
        self.attachments = attachments
    }

    /// Subject, addresses, Message-ID and `X-` headers (the only ones Graph accepts).
    static func fields(_ entity: MIMEEntity) -> [String: JSONValue] {
        var o: [String: JSONValue] = [:]
        if let subject = entity.header("Subject") { o["subject"] = .string(MIMEHeader.decodeWords(subject)) }
        func recipients(_ header: String) -> [JSONValue] {
            entity.headers(header).flatMap(MIMEHeader.addresses).map(Self.recipient)
        }
        if let from = recipients("From").first { o["from"] = from }
        if let sender = recipients("Sender").first ?? o["from"] { o["sender"] = sender }
        for (field, header) in [("toRecipients", "To"), ("ccRecipients", "Cc"), ("bccRecipients", "Bcc"), ("replyTo", "Reply-To")] {
            let list = recipients(header)
            if !list.isEmpty { o[field] = .array(list) }
        }
        if let id = entity.header("Message-ID")?.trimmingCharacters(in: .whitespaces), !id.isEmpty { o["internetMessageId"] = .string(id) }
        let custom = entity.headers.filter { $0.name.lowercased().hasPrefix("x-") && $0.value.utf8.count <= 995 }.prefix(30)
        if !custom.isEmpty {
            o["internetMessageHeaders"] = .array(custom.map { .object(["name": .string($0.name), "value": .string($0.value)]) })
        }
        return o
    }

    static func recipient(_ a: MIMEHeader.Address) -> JSONValue {
        var email: [String: JSONValue] = ["address": .string(a.address)]
        if !a.name.isEmpty { email["name"] = .string(a.name) }
        return .object(["emailAddress": .object(email)])
    }

    /// Finds the body (HTML preferred in an alternative) and everything else as attachments.
    static func walk(_ e: MIMEEntity, body: inout (html: Bool, text: String)?, attachments: inout [Attachment]) {
        if e.contentType == "multipart/alternative" {
            let texts = e.parts.flatMap(\.leaves).filter { $0.contentType == "text/html" || $0.contentType == "text/plain" }
            if body == nil, let best = texts.last(where: { $0.contentType == "text/html" }) ?? texts.first {
                body = (best.contentType == "text/html", best.text)
                // Parts of a related HTML body (inline images) are attachments still.
                for part in e.parts where part.contentType == "multipart/related" {
                    for leaf in part.leaves where leaf.contentType != "text/html" && leaf.contentType != "text/plain" {
                        attachments.append(attachment(leaf))
                    }
                }
                return
            }
        }
        if !e.parts.isEmpty {
            for part in e.parts { walk(part, body: &body, attachments: &attachments) }
            return
        }
        let isText = e.contentType == "text/plain" || e.contentType == "text/html"
        if isText, body == nil, e.disposition?.type != "attachment", e.filename == nil {
            body = (e.contentType == "text/html", e.text)
            return
        }
        attachments.append(attachment(e))
    }

    static func attachment(_ e: MIMEEntity) -> Attachment {
        var item: JSONValue?
        var name = e.filename
        if e.contentType == "message/rfc822", let inner = e.message.first {
            var o = fields(inner)
            var innerBody: (html: Bool, text: String)?
            var ignored: [Attachment] = []
            walk(inner, body: &innerBody, attachments: &ignored)
            o["body"] = .object(["contentType": .string(innerBody?.html == true ? "html" : "text"), "content": .string(innerBody?.text ?? "")])
            o["@odata.type"] = .string("#microsoft.graph.message")
            if let date = inner.header("Date").flatMap(MIMEHeader.date) {
                o["sentDateTime"] = .string(GraphDate.format(date))
                o["receivedDateTime"] = .string(GraphDate.format(date))
            }
            item = .object(o)
            name = name ?? o["subject"]?.string
        }
        let inline = e.contentID != nil && e.disposition?.type != "attachment"
        return Attachment(name: name ?? "attachment", contentType: e.contentType, bytes: e.body, contentID: e.contentID,
                          isInline: inline, item: item)
    }
}
