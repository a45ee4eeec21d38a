import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How entities look on the wire: MIME for `$value`, Graph JSON shapes for listings, bytes for
/// drive downloads.
extension Tenant {
    /// Broken-down UTC time of `d` (formatters are slow and not safe to share across threads).
    static func utc(_ d: Date) -> tm {
        var t = time_t(d.timeIntervalSince1970.rounded(.down))
        var out = tm()
        gmtime_r(&t, &out)
        return out
    }

    private static func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// RFC 5322 date, as in a `Date:` header: `Sun, 4 Jan 2026 05:00:00 +0000`.
    static func rfc5322(_ d: Date) -> String {
        let t = utc(d)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return "\(days[Int(t.tm_wday)]), \(t.tm_mday) \(months[Int(t.tm_mon)]) \(t.tm_year + 1900) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) +0000"
    }

    /// ISO 8601 in UTC, as Graph writes times: `2026-01-04T05:00:00Z`.
    /// (Tests reach both through ``SimulatorClock``.)
    static func iso(_ d: Date) -> String {
        let t = utc(d)
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))Z"
    }

    /// Parses what clients send: ISO 8601 with `Z` or an offset, fractional seconds allowed.
    static func parseISO(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }

    /// The message as Exchange would export it (CRLF lines, 7-bit, attachments in base64).
    func mime(id: String, _ m: Message) -> [UInt8] {
        if let r = m.restored { return r.mime ?? restoredMIME(id: id, m, r) }
        let boundary = "----=_Part_\(String(SimRandom.mix(m.bodySeed, 7), radix: 16))"
        var head = [
            "From: \"\(m.fromName)\" <\(m.fromAddress)>",
            "To: " + m.to.joined(separator: ", "),
            "Subject: \(m.subject)",
            "Date: " + Self.rfc5322(m.received),
            "Message-ID: <\(String(SimRandom.mix(m.bodySeed, 1), radix: 16)).\(m.version)@\(spec.tenantDomain)>",
            "MIME-Version: 1.0",
        ]
        let body = corpus.lines(seed: m.bodySeed, count: 8 + Int(m.bodySeed % 120))
        var out: [UInt8] = []
        if let size = m.largeAttachment {
            head += ["Content-Type: multipart/mixed; boundary=\"\(boundary)\"", "", "--" + boundary,
                     "Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: 7bit", "", ""]
            out = Array(head.joined(separator: "\r\n").utf8) + body
            out += Array(["", "--" + boundary, "Content-Type: application/octet-stream; name=\"large-export.bin\"",
                          "Content-Disposition: attachment; filename=\"large-export.bin\"", "Content-Transfer-Encoding: base64", "", ""].joined(separator: "\r\n").utf8)
            out += Array(Data(Self.generatedBytes(seed: m.bodySeed, count: size)).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed]).utf8)
            // And a small one beside it: together past what fits in one request.
            out += Array(["", "--" + boundary, "Content-Type: text/plain; name=\"notes.txt\"", "Content-Disposition: attachment; filename=\"notes.txt\"",
                          "Content-Transfer-Encoding: base64", "", Data("notes for the export\r\n".utf8).base64EncodedString()].joined(separator: "\r\n").utf8)
            out += Array("\r\n--\(boundary)--\r\n".utf8)
            return out
        }
        if let a = m.attachment {
            let att = corpus.attachments[a % corpus.attachments.count]
            head += ["Content-Type: multipart/mixed; boundary=\"\(boundary)\"", "", "This is a multi-part message in MIME format.", "",
                     "--" + boundary, "Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: 7bit", "", ""]
            out = Array(head.joined(separator: "\r\n").utf8)
            out += body
            let part = ["", "--" + boundary, "Content-Type: \(att.mimeType); name=\"\(att.name)\"",
                        "Content-Disposition: attachment; filename=\"\(att.name)\"", "Content-Transfer-Encoding: base64", "", ""]
            out += Array(part.joined(separator: "\r\n").utf8)
            out += encodedAttachment(a)
            out += Array("\r\n\r\n--\(boundary)--\r\n".utf8)
        } else {
            head += ["Content-Type: text/plain; charset=\"us-ascii\"", "Content-Transfer-Encoding: 7bit", "", ""]
            out = Array(head.joined(separator: "\r\n").utf8)
            out += body
        }
        return out
    }

    /// Incompressible bytes from a seed (a generated attachment).
    static func generatedBytes(seed: UInt64, count: Int) -> [UInt8] {
        var rng = SimRandom(seed)
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            withUnsafeBytes(of: rng.next()) { w in
                for k in 0..<min(8, count - i) { out[i + k] = w[k] }
            }
            i += 8
        }
        return out
    }

    /// An Exchange-style change key: changes whenever the item's version does.
    static func changeKey(_ id: String, _ version: String) -> String {
        Data("\(id)|\(version)".utf8.suffix(24)).base64EncodedString()
    }

    /// Attachment `i` as bytes, read from its file once.
    func attachmentBytes(_ i: Int) -> [UInt8] {
        if let cached = attachmentBytesCache.withLock({ $0[i] }) { return cached }
        let bytes = corpus.attachmentBytes(i)
        attachmentBytesCache.withLock { $0[i] = bytes }
        return bytes
    }

    /// Attachment `i` in base64 (76-column CRLF lines), encoded once.
    private func encodedAttachment(_ i: Int) -> [UInt8] {
        if let cached = attachmentCache.withLock({ $0[i] }) { return cached }
        let encoded = Array(Data(attachmentBytes(i)).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed]).utf8)
        attachmentCache.withLock { $0[i] = encoded }
        return encoded
    }

    /// A message as Graph lists it. Without `$select`, Graph's message delta returns the body
    /// too (`body`, `bodyPreview`), as Microsoft's own sample shows; `body: false` leaves it out
    /// when the caller selected neither.
    func messageJSON(id: String, _ m: Message, user: User, body: Bool = true) -> [String: Any] {
        if let r = m.restored { return restoredJSON(id: id, m, r, body: body) }
        let changeKey = Self.changeKey(id, "\(m.version)|\(m.isRead)")
        var json: [String: Any] = [
            "@odata.type": "#microsoft.graph.message",
            "@odata.etag": "W/\"\(changeKey)\"",
            "id": id,
            "changeKey": changeKey,
            "createdDateTime": Self.iso(m.received),
            "lastModifiedDateTime": Self.iso(m.received.addingTimeInterval(Double(m.version))),
            "receivedDateTime": Self.iso(m.received),
            "sentDateTime": Self.iso(m.received.addingTimeInterval(-5)),
            "hasAttachments": m.attachment != nil || m.largeAttachment != nil,
            "internetMessageId": "<\(String(SimRandom.mix(m.bodySeed, 1), radix: 16)).\(m.version)@\(spec.tenantDomain)>",
            "subject": m.subject,
            "importance": "normal",
            "parentFolderId": m.folderId,
            "conversationId": Data("conv-\(m.subject.prefix(12))".utf8).base64EncodedString(),
            // Graph's own docs show "isRead" as a string in places; the client must take both.
            "isRead": m.version % 2 == 0 ? (m.isRead ? "true" : "false") as Any : m.isRead as Any,
            "isDraft": false,
            "sender": ["emailAddress": ["name": m.fromName, "address": m.fromAddress]],
            "from": ["emailAddress": ["name": m.fromName, "address": m.fromAddress]],
            "toRecipients": m.to.map { ["emailAddress": ["name": $0, "address": $0]] },
        ]
        if body {
            let text = String(decoding: corpus.lines(seed: m.bodySeed, count: 8 + Int(m.bodySeed % 120)), as: UTF8.self)
            json["body"] = ["contentType": "text", "content": text]
            json["bodyPreview"] = String(text.prefix(255))
        }
        return json
    }

    func folderJSON(id: String, _ f: MailFolder, user: User, counts: (total: Int, unread: Int, children: Int)) -> [String: Any] {
        [
            "@odata.type": "#microsoft.graph.mailFolder",
            "id": id,
            "displayName": f.displayName,
            "parentFolderId": f.parentFolderId ?? "AAMkAGroot=",
            "childFolderCount": counts.children,
            "unreadItemCount": counts.unread,
            "totalItemCount": counts.total,
        ]
    }

    func eventJSON(id: String, _ e: Event) -> [String: Any] {
        let changeKey = Self.changeKey(id, "\(e.version)")
        if let data = e.json, var o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            o["@odata.type"] = "#microsoft.graph.event"
            o["@odata.etag"] = "W/\"\(changeKey)\""
            o["id"] = id
            o["changeKey"] = changeKey
            o["type"] = e.recurrence == nil ? "singleInstance" : "seriesMaster"
            return o
        }
        var o: [String: Any] = [
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": "W/\"\(changeKey)\"",
            "id": id,
            "changeKey": changeKey,
            "subject": e.subject,
            "bodyPreview": e.subject,
            "start": ["dateTime": String(Self.iso(e.start).dropLast()) + ".0000000", "timeZone": "UTC"],
            "end": ["dateTime": String(Self.iso(e.start.addingTimeInterval(Double(e.minutes) * 60)).dropLast()) + ".0000000", "timeZone": "UTC"],
            "location": ["displayName": e.location],
            "attendees": e.attendees.map { ["type": "required", "emailAddress": ["name": $0, "address": $0]] },
            "isAllDay": false,
            "transactionId": NSNull(),
            "type": e.recurrence == nil ? "singleInstance" : "seriesMaster",
        ]
        if let recurrence = e.recurrence { o["recurrence"] = recurrence.graphJSON(start: e.start) }
        return o
    }

    func contactJSON(id: String, _ c: Contact) -> [String: Any] {
        let changeKey = Self.changeKey(id, "\(c.version)")
        if let data = c.json, var o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            o["@odata.type"] = "#microsoft.graph.contact"
            o["@odata.etag"] = "W/\"\(changeKey)\""
            o["id"] = id
            o["changeKey"] = changeKey
            return o
        }
        return [
            "@odata.type": "#microsoft.graph.contact",
            "@odata.etag": "W/\"\(changeKey)\"",
            "id": id,
            "changeKey": changeKey,
            "displayName": "\(c.givenName) \(c.surname)",
            "givenName": c.givenName,
            "surname": c.surname,
            "emailAddresses": [["name": "\(c.givenName) \(c.surname)", "address": c.email]],
            "businessPhones": [c.phone],
        ]
    }

    /// `length` bytes of a drive file's content from `offset`. Generated content is pseudo-text
    /// in 64 KiB blocks, each a function of (seed, block), so any range is cheap to make.
    func fileBytes(_ item: DriveItem, offset: Int64, length: Int) -> [UInt8] {
        switch item.content {
        case .none, .received:
            return []
        case .uploaded(let bytes):
            let lo = Int(min(offset, Int64(bytes.count))), hi = min(lo + length, bytes.count)
            return Array(bytes[lo..<hi])
        case .corpus(let i):
            let all = attachmentBytes(i)
            let lo = Int(min(offset, Int64(all.count))), hi = min(lo + length, all.count)
            return Array(all[lo..<hi])
        case .encrypted(let seed):
            var out = [UInt8](repeating: 0, count: length)
            var pos = offset
            out.withUnsafeMutableBytes { buf in
                var i = 0
                while i < length {
                    let word = SimRandom.mix(seed, UInt64(pos >> 3))
                    let skip = Int(pos & 7)
                    withUnsafeBytes(of: word) { w in
                        let n = min(8 - skip, length - i)
                        for k in 0..<n { buf[i + k] = w[skip + k] }
                        i += n
                        pos += Int64(n)
                    }
                }
            }
            return out
        case .generated(let seed, let edits):
            let block = 65_536
            var out: [UInt8] = []
            out.reserveCapacity(length)
            var pos = offset
            while out.count < length {
                let b = pos / Int64(block)
                var text = Array(corpus.slice(seed: SimRandom.mix(seed, UInt64(b)), size: block))
                if text.count < block { text += [UInt8](repeating: 0x20, count: block - text.count) }
                // Each edit rewrites 512 bytes in one block: a small in-place change.
                for (n, e) in edits.enumerated() where Int64(e % UInt64(max(1, item.size / Int64(block) + 1))) == b {
                    let at = Int(SimRandom.mix(e, 3) % UInt64(block - 512))
                    let patch = Array("[edit \(n + 1)] ".utf8)
                    for k in 0..<512 { text[at + k] = patch[k % patch.count] }
                }
                let within = Int(pos - b * Int64(block))
                let n = min(block - within, length - out.count)
                out += text[within..<(within + n)]
                pos += Int64(n)
            }
            return out
        }
    }
}

/// The simulator's time formats, for tests.
public enum SimulatorClock {
    public static func iso(_ d: Date) -> String { Tenant.iso(d) }
    public static func rfc5322(_ d: Date) -> String { Tenant.rfc5322(d) }
}
