import Foundation
import GraphSimulator
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

@Suite("MIME to Graph JSON")
struct MIMETests {
    static func build(_ text: String, item: JSONValue? = nil) -> GraphMessageBuilder {
        GraphMessageBuilder(mime: Array(text.utf8), item: item, restoreKey: "K")
    }

    static func sha(_ bytes: [UInt8]) -> String { SHA256.hash(bytes).hex }

    @Test func theSimulatorsMailReadsAsPythonsEmailPackageReadsIt() async throws {
        var spec = GraphFixture.smallSpec
        spec.attachmentShare = 0.6
        let f = try await GraphFixture(spec: spec)
        var ours: [String] = []
        var count = 0
        for user in f.sim.tenant.users {
            for m in f.sim.tenant.mailbox(upn: user.upn) {
                let path = f.dir.path + "/m\(count).eml"
                try Fixtures.writeFile(path, m.mime)
                let b = GraphMessageBuilder(mime: m.mime, item: nil, restoreKey: nil)
                let to = (b.message["toRecipients"]?.array ?? []).compactMap { $0["emailAddress"]?["address"]?.string }.joined(separator: ",")
                let body = (b.message["body"]?["content"]?.string ?? "").replacingOccurrences(of: "\r\n", with: "\n")
                let attachments = b.attachments.map { "\($0.name):\(Self.sha($0.bytes))" }.joined(separator: ",")
                ours.append([b.message["subject"]?.string ?? "", b.message["from"]?["emailAddress"]?["address"]?.string ?? "",
                             b.message["from"]?["emailAddress"]?["name"]?.string ?? "", to,
                             Self.sha(Array(body.trimmingCharacters(in: .whitespacesAndNewlines).utf8)), attachments].joined(separator: "|"))
                count += 1
            }
        }
        let script = """
            import email, email.policy, hashlib, sys
            from email.utils import getaddresses
            d, n = sys.argv[1], int(sys.argv[2])
            for i in range(n):
                m = email.message_from_bytes(open(f'{d}/m{i}.eml', 'rb').read(), policy=email.policy.default)
                body = m.get_body(preferencelist=('html', 'plain'))
                text = body.get_content().replace('\\r\\n', '\\n').strip() if body is not None else ''
                frm = getaddresses([str(m['From'])])[0]
                to = ','.join(a for _, a in getaddresses([str(m['To'])]))
                atts = ','.join(f"{a.get_filename()}:{hashlib.sha256(a.get_payload(decode=True)).hexdigest()}" for a in m.iter_attachments())
                print('|'.join([str(m['Subject']), frm[1], frm[0], to, hashlib.sha256(text.encode()).hexdigest(), atts]))
            """
        let (status, printed) = try python(script, f.dir.path, "\(count)")
        #expect(status == 0, "\(printed)")
        let theirs = printed.split(separator: "\n").map(String.init)
        #expect(theirs.count == count && count > 20)
        for (i, line) in ours.enumerated() where i < theirs.count {
            #expect(line == theirs[i], "message \(i)")
        }
        #expect(ours.contains { $0.split(separator: "|", omittingEmptySubsequences: false).last?.isEmpty == false }, "some messages have attachments")
        await f.close()
    }

    @Test func notADraftWithItsOriginalDatesReadStateAndKey() throws {
        let item = try JSONValue.parse(Array(#"{"isRead":"true","receivedDateTime":"2026-03-02T10:00:05Z","importance":"high","categories":["Red"],"flag":{"flagStatus":"flagged"}}"#.utf8))
        let b = Self.build("From: a@b.example\r\nTo: c@d.example\r\nSubject: Q3 budget\r\nDate: Mon, 2 Mar 2026 11:00:00 +0100\r\n\r\nHello\r\n", item: item)
        let props = Dictionary(uniqueKeysWithValues: (b.message["singleValueExtendedProperties"]?.array ?? []).compactMap { p in
            p["id"]?.string.flatMap { id in p["value"]?.string.map { (id, $0) } }
        })
        #expect(props[GraphMessageBuilder.flagsProperty] == "4")
        #expect(props[GraphMessageBuilder.sentProperty] == "2026-03-02T10:00:00Z")
        #expect(props[GraphMessageBuilder.receivedProperty] == "2026-03-02T10:00:05Z")
        #expect(props[GraphMessageBuilder.restoreKeyProperty] == "K")
        #expect(b.message["isRead"] == .bool(true))
        #expect(b.message["importance"]?.string == "high")
        #expect(b.message["categories"]?.array == [.string("Red")])
        #expect(b.message["flag"]?["flagStatus"]?.string == "flagged")
        #expect(b.message["isDraft"] == nil, "the draft state comes from the flags, not a field Graph ignores")
    }

    @Test func brokenAndUnusualMailStillParses() throws {
        // LF endings, a folded 8-bit Latin-1 header, encoded words in two charsets side by side,
        // an RFC 2231 file name, quoted-printable with soft breaks, base64 with junk and no
        // closing boundary, a header line without a colon.
        var mime = Array("From: =?iso-8859-1?Q?Ren=E9?= =?utf-8?B?w4lsaXNl?= <rene@x.example>\nTo: \"Doe, Jane\" <jane@x.example>, (comment) bob@y.example,\n  Team: c@z.example, d@z.example;\nSubject: caf".utf8)
        mime += [0xE9]  // é in Latin-1, raw
        mime += Array(" =?UTF-8?Q?=E2=82=AC_rates?=\n\tcontinued\nno colon here\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\nContent-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: quoted-printable\n\nPrice: 5 =80, soft=\n break =3D ok\n--b1\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.pdf\nContent-Transfer-Encoding: base64\n\nSGVs bG8g!!\nd29y bGQ\n".utf8)
        let b = GraphMessageBuilder(mime: mime, item: nil, restoreKey: nil)
        #expect(b.message["subject"]?.string == "café € rates continued")
        #expect(b.message["from"]?["emailAddress"]?["name"]?.string == "RenéÉlise")
        let to = (b.message["toRecipients"]?.array ?? []).compactMap { $0["emailAddress"]?["address"]?.string }
        #expect(to == ["jane@x.example", "bob@y.example", "c@z.example", "d@z.example"])
        #expect(b.message["toRecipients"]?.array?.first?["emailAddress"]?["name"]?.string == "Doe, Jane")
        #expect(b.message["body"]?["content"]?.string == "Price: 5 €, soft break = ok")
        #expect(b.attachments.count == 1)
        #expect(b.attachments.first?.name == "€ rates.pdf")
        #expect(b.attachments.first?.bytes == Array("Hello world".utf8))
    }

    @Test func alternativeRelatedInlineImagesAndAttachedMessages() throws {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]
        let text = """
            From: a@b.example\r
            Subject: outer\r
            Content-Type: multipart/mixed; boundary=outer\r
            \r
            --outer\r
            Content-Type: multipart/alternative; boundary=alt\r
            \r
            --alt\r
            Content-Type: text/plain\r
            \r
            plain version\r
            --alt\r
            Content-Type: multipart/related; boundary=rel\r
            \r
            --rel\r
            Content-Type: text/html; charset=utf-8\r
            \r
            <p>html <img src="cid:logo@x"></p>\r
            --rel\r
            Content-Type: image/png\r
            Content-ID: <logo@x>\r
            Content-Transfer-Encoding: base64\r
            \r
            \(Data(png).base64EncodedString())\r
            --rel--\r
            --alt--\r
            --outer\r
            Content-Type: message/rfc822\r
            \r
            From: inner@b.example\r
            Subject: the forwarded one\r
            Date: Tue, 3 Mar 2026 09:00:00 GMT\r
            \r
            inner body\r
            --outer--\r
            epilogue\r
            """
        let b = Self.build(text)
        #expect(b.message["body"]?["contentType"]?.string == "html")
        #expect(b.message["body"]?["content"]?.string == "<p>html <img src=\"cid:logo@x\"></p>")
        #expect(b.attachments.count == 2)
        let image = try #require(b.attachments.first { $0.contentType == "image/png" })
        #expect(image.bytes == png && image.isInline && image.contentID == "logo@x")
        let forwarded = try #require(b.attachments.first { $0.item != nil })
        #expect(forwarded.name == "the forwarded one")
        #expect(forwarded.item?["body"]?["content"]?.string == "inner body")
        #expect(forwarded.item?["sentDateTime"]?.string == "2026-03-03T09:00:00Z")
        #expect(forwarded.json["@odata.type"]?.string == "#microsoft.graph.itemAttachment")
    }

    @Test func hostileNestingAndSizesAreBounded() throws {
        // 5,000 nested multiparts: parsed to the depth limit, no stack exhaustion.
        var deep = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        for _ in 0..<5000 { deep += "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" }
        let entity = MIMEEntity.parse(Array(deep.utf8))
        var depth = 0
        var e = entity
        while let next = e.parts.first { e = next; depth += 1 }
        #expect(depth <= MIMEEntity.Limits().depth)
        // Many parts: at most the part budget.
        var wide = "Content-Type: multipart/mixed; boundary=w\r\n\r\n"
        for i in 0..<5000 { wide += "--w\r\nContent-Type: text/plain\r\n\r\n\(i)\r\n" }
        #expect(MIMEEntity.parse(Array(wide.utf8)).parts.count <= MIMEEntity.Limits().parts)
        // Empty, all header, no header.
        #expect(MIMEEntity.parse([]).headers.isEmpty)
        #expect(MIMEEntity.parse(Array("Subject: x".utf8)).header("subject") == "x")
        #expect(MIMEEntity.parse(Array("\r\nbody".utf8)).body == Array("body".utf8))
    }

    @Test func rfc5322Dates() {
        #expect(MIMEHeader.date("Tue, 1 Dec 2026 14:06:10 +0100") == GraphDate.parse("2026-12-01T13:06:10Z"))
        #expect(MIMEHeader.date("1 Dec 2026 14:06 GMT") == GraphDate.parse("2026-12-01T14:06:00Z"))
        #expect(MIMEHeader.date("Wed, 02 Oct 02 08:00:00 EST (comment)") == GraphDate.parse("2002-10-02T13:00:00Z"))
        #expect(MIMEHeader.date("Mon, 31 Feb 2026 10:00:00 +0000") == nil)
        #expect(MIMEHeader.date("yesterday") == nil)
    }
}
