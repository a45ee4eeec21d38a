import Foundation
import GraphSimulator
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

@Suite("Find items in snapshots")
struct FindTests {
    func find(_ f: GraphFixture, all: Bool = true, _ configure: (inout ItemQuery) -> Void) throws -> ItemFinder.Result {
        var query = ItemQuery()
        configure(&query)
        try f.repo.loadIndex()
        let snapshots = try f.repo.listSnapshots()
        return try ItemFinder(repository: f.repo, query: query).run(snapshots: all ? snapshots : [snapshots[snapshots.count - 1]])
    }

    @Test func aDeletedMessageIsFoundBySenderAndSubjectInTheSnapshotsThatHoldIt() async throws {
        let f = try await GraphFixture()
        let first = try await f.backup()
        let upn = f.sim.tenant.users[0].upn
        let mailbox = try find(f) { $0.user = upn; $0.kinds = [.mail] }
        #expect(mailbox.matches.count == f.sim.tenant.mailbox(upn: upn).count)
        #expect(mailbox.matches.allSatisfy { $0.item.path.hasPrefix("/users/\(upn)/mail/") && $0.item.from != nil && $0.item.date != nil })

        // The one an administrator is asked for: known by its sender's name and a word of its subject.
        let wanted = try #require(mailbox.matches.first { ($0.item.title.split(separator: " ").first?.count ?? 0) >= 4 })
        let word = String(try #require(wanted.item.title.split(separator: " ").first)).uppercased()
        let sender = String(try #require(wanted.item.from?.split(separator: " ").first)).lowercased()
        let name = String(try #require(wanted.item.path.split(separator: "/").last).dropLast(4))
        let id = try #require(f.sim.tenant.mailbox(upn: upn).first { $0.id.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") == name }).id
        f.sim.tenant.deleteMessage(upn: upn, id: id)
        let second = try await f.backup()

        let now = try find(f, all: false) { $0.from = sender; $0.subject = word }
        #expect(!now.matches.contains { $0.item.path == wanted.item.path }, "gone from the latest snapshot")
        let everywhere = try find(f) { $0.from = sender; $0.subject = word }
        let hit = try #require(everywhere.matches.first { $0.item.path == wanted.item.path })
        #expect(hit.snapshots == [first.snapshotID])
        #expect(hit.item.title == wanted.item.title)
        #expect(everywhere.matches.allSatisfy { ItemQuery.contains($0.item.title, word) && ItemQuery.contains($0.item.from ?? "", sender) })

        // An unchanged message is one match held by both snapshots, newest first; the second
        // snapshot's unchanged folders were not read again.
        let both = try find(f) { $0.user = upn; $0.kinds = [.mail] }
        let kept = try #require(both.matches.first { $0.item.path != wanted.item.path })
        #expect(kept.snapshots == [second.snapshotID, first.snapshotID])
        #expect(both.matches.count == mailbox.matches.count)
        #expect(both.treesRead < 2 * mailbox.treesRead)
        await f.close()
    }

    @Test func kindsDatesNamesPathsAndUsersNarrowTheSearch() async throws {
        let f = try await GraphFixture()
        _ = try await f.backup()
        let users = f.sim.tenant.users
        let everything = try find(f) { _ in }
        for kind in ItemQuery.Kind.allCases {
            let some = try find(f) { $0.kinds = [kind] }
            #expect(!some.matches.isEmpty, "\(kind)")
            #expect(some.matches.allSatisfy { $0.item.kind == kind })
        }
        #expect(everything.matches.count == Set(ItemQuery.Kind.allCases).reduce(0) { n, kind in
            n + ((try? find(f) { $0.kinds = [kind] }.matches.count) ?? 0)
        })

        // Events are described from their JSON: subject, start, attendees.
        let events = try find(f) { $0.kinds = [.event]; $0.user = users[1].upn }
        let event = try #require(events.matches.first { !$0.item.to.isEmpty })
        #expect(event.item.path.hasPrefix("/users/\(users[1].upn)/calendar"))
        let attendee = String(try #require(event.item.to.first?.split(separator: "@").first))
        #expect(try find(f) { $0.kinds = [.event]; $0.to = attendee }.matches.contains { $0.item.path == event.item.path })

        // Dates: --after is inclusive, --before exclusive.
        let date = try #require(event.item.date)
        let onTheDay = try find(f) { $0.kinds = [.event]; $0.after = date; $0.before = date.addingTimeInterval(1) }
        #expect(onTheDay.matches.contains { $0.item.path == event.item.path })
        #expect(onTheDay.matches.allSatisfy { $0.item.date == date })
        #expect(try find(f) { $0.kinds = [.event]; $0.before = date }.matches.allSatisfy { ($0.item.date ?? date) < date })

        // Files by name and path globs, case-insensitive; a subject excludes files.
        let files = try find(f) { $0.kinds = [.file]; $0.user = users[0].upn }
        let file = try #require(files.matches.first)
        let ext = String(try #require(file.item.title.split(separator: ".").last))
        let byName = try find(f) { $0.name = "*." + ext.uppercased() }
        #expect(byName.matches.contains { $0.item.path == file.item.path })
        #expect(byName.matches.allSatisfy { $0.item.title.lowercased().hasSuffix("." + ext.lowercased()) })
        #expect(try find(f) { $0.path = "/users/\(users[0].upn)/onedrive/*" }.matches.count == files.matches.count)
        #expect(try find(f) { $0.subject = ""; $0.kinds = [.file] }.matches.isEmpty)

        // Another user's mailbox is not read at all.
        let one = try find(f) { $0.user = users[0].upn.uppercased() }
        #expect(!one.matches.isEmpty && one.matches.allSatisfy { $0.item.path.hasPrefix("/users/\(users[0].upn)/") })
        #expect(one.treesRead < everything.treesRead)
        await f.close()
    }
}
