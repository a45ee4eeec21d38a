import Foundation
import GraphSimulator
import Logging
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

/// The issue's round trip, whole: back up, replicate to site B, then ransomware on a OneDrive,
/// an emptied Inbox and deleted events (a series among them); `m365 restore --only-changed`
/// from site B's copy; a second backup at site A holds, item by item, what the first did, and
/// nothing that was untouched was written.
@Suite("Restore into Microsoft 365: the worst day, from site B")
struct WorstDayTests {
    @Test(.timeLimit(.minutes(3)))
    func everythingComesBackFromSiteBAndNothingUntouchedIsWritten() async throws {
        var spec = GraphFixture.smallSpec
        spec.seriesEvery = 2
        spec.attachmentShare = 0.5
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let first = try await f.backup()

        let receiver = try await RunningReceiver(root: f.dir.path + "/site-b")
        _ = try await ReplicationFixtures.replicate(f.dir.path + "/repo", port: receiver.port)
        await receiver.stop()
        let siteB = try Repository.open(path: f.dir.path + "/site-b/" + f.repo.config.id, password: Fixtures.password)
        try siteB.loadIndex()

        // The worst day.
        let files = f.sim.tenant.driveFiles(upn: upn)
        let encrypted = f.sim.tenant.ransomware(upn: upn, share: 0.5).encrypted
        let deletedFile = try #require(files.keys.sorted().first { f.sim.tenant.driveFiles(upn: upn)[$0] == files[$0] })
        #expect(f.sim.tenant.deleteFile(upn: upn, path: deletedFile))
        let mailbox = f.sim.tenant.mailbox(upn: upn).count
        let emptied = f.sim.tenant.emptyFolder(upn: upn, displayName: "Inbox")
        let events = f.sim.tenant.jsonItems(upn: upn, events: true)
        let shapes = f.sim.tenant.seriesShapes(upn: upn)
        let series = try #require(events.keys.sorted().first { events[$0]?.range(of: Data("seriesMaster".utf8)) != nil })
        let single = try #require(events.keys.sorted().first { events[$0]?.range(of: Data("singleInstance".utf8)) != nil })
        for id in [series, single] { #expect(f.sim.tenant.deleteEvent(upn: upn, id: id)) }
        #expect(encrypted > 0 && emptied > 3)

        // Back from site B, only what changed.
        let before = f.sim.stats
        var options = M365Restore.Options()
        options.onlyChanged = true
        options.journalDirectory = f.dir.path + "/journals"
        func restore(_ path: String) async throws -> M365Restore.Summary {
            let summary = try await M365Restore(repository: siteB, client: f.client, options: options).run(snapshotID: first.snapshotID, path: path)
            #expect(summary.failures.isEmpty, "\(path): \(summary.failures)")
            return summary
        }
        let drive = try await restore("/users/\(upn)/onedrive")
        let mail = try await restore("/users/\(upn)/mail")
        let calendar = try await restore("/users/\(upn)/calendar")
        #expect(drive.replaced == encrypted && drive.created == 1 && drive.unchanged == files.count - encrypted - 1)
        #expect(mail.created == emptied && mail.unchanged == mailbox - emptied)
        #expect(calendar.created == 2 && calendar.unchanged == events.count - 2)
        let after = f.sim.stats
        #expect(after.filesCommitted - before.filesCommitted == encrypted + 1, "only the encrypted and the deleted file were uploaded")
        #expect(after.messagesCreated - before.messagesCreated == emptied)
        #expect(after.eventsCreated - before.eventsCreated == 2 && after.invitationsSent == before.invitationsSent)
        #expect(f.sim.tenant.driveFiles(upn: upn) == files)
        #expect(f.sim.tenant.seriesShapes(upn: upn) == shapes)

        // Backed up again: item by item what the first snapshot held.
        let second = try await f.backup()
        let drivePath = "/users/\(upn)/onedrive"
        let oldFiles = try DriveRestoreTests.files(f, first.snapshotID, drivePath), newFiles = try DriveRestoreTests.files(f, second.snapshotID, drivePath)
        #expect(Set(oldFiles.keys) == Set(newFiles.keys))
        for (path, old) in oldFiles {
            #expect(newFiles[path]?.bytes == old.bytes, "\(path) byte-identical")
            #expect(newFiles[path]?.mtimeNs.map { $0 / 1_000_000_000 } == old.mtimeNs.map { $0 / 1_000_000_000 }, "\(path) modified time")
        }
        let inbox = "/users/\(upn)/mail/Inbox"
        let oldMail = try MailRestoreTests.messages(f, first.snapshotID, inbox), newMail = try MailRestoreTests.messages(f, second.snapshotID, inbox)
        #expect(oldMail.count == newMail.count)
        for (built, item) in oldMail {
            let imid = built.message["internetMessageId"]?.string
            guard let (again, againItem) = newMail.first(where: { $0.built.message["internetMessageId"]?.string == imid }) else {
                Issue.record("\(imid ?? "?") did not come back")
                continue
            }
            for field in ["subject", "from", "toRecipients", "ccRecipients", "replyTo"] { #expect(again.message[field] == built.message[field], "\(field)") }
            #expect(again.attachments.map { [$0.name, SHA256.hash($0.bytes).hex] } == built.attachments.map { [$0.name, SHA256.hash($0.bytes).hex] })
            for field in ["isRead", "isDraft", "receivedDateTime", "sentDateTime"] { #expect(againItem[field] == item[field], "\(field)") }
            #expect(again.message["body"]?["content"]?.string?.trimmingCharacters(in: .whitespacesAndNewlines)
                    == built.message["body"]?["content"]?.string?.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let calendarPath = "/users/\(upn)/calendar"
        let oldEvents = try EventContactRestoreTests.items(f, first.snapshotID, calendarPath).map { EventContactRestoreTests.fields($0, events: true) }
        let newEvents = try EventContactRestoreTests.items(f, second.snapshotID, calendarPath).map { EventContactRestoreTests.fields($0, events: true) }
        #expect(oldEvents.count == newEvents.count)
        for event in oldEvents { #expect(newEvents.contains(event), "\(event["subject"]?.string ?? "an occurrence")") }
        await f.close()
    }
}
