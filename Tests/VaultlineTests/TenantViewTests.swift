import Foundation
import GraphSimulator
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

/// `--at TIME`: the tenant put together from snapshots that each hold a part of it.
@Suite("The tenant at a point in time")
struct TenantViewTests {
    static let base = "https://graph.microsoft.com/v1.0"

    static func snapshot(_ minute: Int, _ paths: [String], kind: String = M365Backup.sourceKind) -> Snapshot {
        Snapshot(time: Date(timeIntervalSince1970: 1_800_000_000 + 60 * Double(minute)), sourceKind: kind, paths: paths.map { base + $0 },
                 tags: [], parent: nil, tree: String(repeating: "0", count: 64), stats: .init())
    }

    static func at(_ minute: Int) -> Date { Date(timeIntervalSince1970: 1_800_000_000 + 60 * Double(minute)) }

    @Test func eachPathComesFromTheNewestSnapshotThatHoldsIt() throws {
        let snapshots: [(id: String, snapshot: Snapshot)] = [
            ("whole", Self.snapshot(0, [""])),
            ("alice-mail", Self.snapshot(5, ["/users/alice@contoso.com/mail", "/users/alice@contoso.com/calendar",
                                              "/users/alice@contoso.com/calendars", "/users/alice@contoso.com/contacts"])),
            ("bob", Self.snapshot(7, ["/users/bob@contoso.com"])),
            ("files", Snapshot(time: Self.at(8), sourceKind: "files", paths: ["/home"], tags: [], parent: nil, tree: "", stats: .init())),
            ("later", Self.snapshot(20, [""])),
        ]
        let view = try TenantView(at: Self.at(10), snapshots: snapshots)
        #expect(view.graphBase == Self.base)
        #expect(view.parts.map(\.snapshotID) == ["bob", "alice-mail", "alice-mail", "alice-mail", "alice-mail", "whole"])
        #expect(view.owner(of: "/users/Alice@Contoso.com/mail/Inbox/x.eml")?.snapshotID == "alice-mail", "UPNs match without case")
        #expect(view.owner(of: "/users/alice@contoso.com/onedrive/a.txt")?.snapshotID == "whole")
        #expect(view.owner(of: "/users/bob@contoso.com/onedrive")?.snapshotID == "bob")
        #expect(view.owner(of: "/sites/marketing/Documents")?.snapshotID == "whole")
        #expect(view.owner(of: "/users/alice@contoso.com.evil/mail")?.snapshotID == "whole", "a prefix of a name is not an ancestor")

        #expect(try view.holder(of: "/users/alice@contoso.com/mail/Inbox").snapshotID == "alice-mail")
        #expect(try view.holder(of: "/users/bob@contoso.com").snapshotID == "bob")
        let spanning = #expect(throws: VaultlineError.self) { try view.holder(of: "/users/alice@contoso.com") }
        #expect(spanning?.code == .invalidArgument)
        #expect(spanning?.message.contains("/users/alice@contoso.com/mail") == true)

        // Before the first snapshot there is nothing; at minute 5 alice's mail is the worker's.
        let none = #expect(throws: VaultlineError.self) { try TenantView(at: Self.at(-1), snapshots: snapshots) }
        #expect(none?.code == .notFound)
        #expect(try TenantView(at: Self.at(5), snapshots: snapshots).owner(of: "/users/alice@contoso.com/mail")?.snapshotID == "alice-mail")
        #expect(try TenantView(at: Self.at(4), snapshots: snapshots).owner(of: "/users/alice@contoso.com/mail")?.snapshotID == "whole")
        #expect(try TenantView(at: Self.at(30), snapshots: snapshots).parts.map(\.snapshotID) == ["later", "bob", "alice-mail", "alice-mail",
                                                                                                   "alice-mail", "alice-mail", "whole"])
    }

    @Test func snapshotsOfAnotherTenantAreLeftOut() throws {
        var other = Self.snapshot(9, [""])
        other.paths = ["http://127.0.0.1:9/v1.0"]
        let view = try TenantView(at: Self.at(10), snapshots: [("ours", Self.snapshot(1, [""])), ("theirs", other)])
        #expect(view.graphBase == "http://127.0.0.1:9/v1.0")
        #expect(view.parts.map(\.snapshotID) == ["theirs"])
    }

    @Test func scopedRunsSayWhatTheyHoldAndStartFromTheSnapshotThatHoldsIt() async throws {
        let f = try await GraphFixture()
        let whole = try await f.backup()
        let users = f.sim.tenant.users
        let (alice, bob) = (users[0].upn, users[1].upn)
        let message = try #require(f.sim.tenant.mailbox(upn: alice).first)
        f.sim.tenant.deleteMessage(upn: alice, id: message.id)
        let file = try #require(f.sim.tenant.driveFiles(upn: alice).keys.sorted().first)
        #expect(f.sim.tenant.deleteFile(upn: alice, path: file))

        // A worker's task: alice's mailbox only. It starts from the whole tenant's snapshot
        // (whose state holds her links): one message gone, nothing downloaded.
        let mailbox = try await f.backup { $0.users = [alice]; $0.onedrive = false; $0.sites = false }
        let graphBase = try #require(whole.snapshot.paths.first)
        #expect(mailbox.snapshot.paths == ["mail", "calendar", "calendars", "contacts"].map { graphBase + "/users/" + alice.lowercased() + "/" + $0 })
        #expect(mailbox.snapshot.parent == whole.snapshotID)
        #expect(mailbox.itemsDownloaded == 0)
        try f.repo.loadIndex()
        #expect(try f.repo.loadTree(mailbox.snapshot.tree).nodes.map(\.name) == ["users"], "no sites in a mailbox's snapshot")
        let sites = try await f.backup { $0.users = []; $0.siteNames = ["marketing"] }
        #expect(sites.snapshot.paths == [graphBase + "/sites/marketing"])

        try f.repo.loadIndex()
        let snapshots = try f.repo.listSnapshots()
        let now = try TenantView(at: Date(), snapshots: snapshots)
        #expect(try now.holder(of: "/users/\(alice)/mail").snapshotID == mailbox.snapshotID)
        #expect(try now.holder(of: "/users/\(alice)/onedrive").snapshotID == whole.snapshotID)
        #expect(try now.holder(of: "/users/\(bob)").snapshotID == whole.snapshotID)
        #expect(try now.holder(of: "/sites/marketing/Documents").snapshotID == sites.snapshotID)

        // find --at: alice's mail as the worker stored it (the message gone), her OneDrive as the
        // whole tenant's snapshot has it (the file there: no later snapshot holds her OneDrive).
        func find(at view: TenantView, _ configure: (inout ItemQuery) -> Void) throws -> ItemFinder.Result {
            var query = ItemQuery()
            configure(&query)
            return try ItemFinder(repository: f.repo, query: query).run(at: view, snapshots: snapshots)
        }
        let deletedName = itemFileName(message.id, ext: ".eml")
        let mail = try find(at: now) { $0.user = alice; $0.kinds = [.mail] }
        #expect(mail.matches.count == f.sim.tenant.mailbox(upn: alice).count)
        #expect(!mail.matches.contains { $0.item.path.hasSuffix(deletedName) })
        #expect(mail.matches.allSatisfy { $0.snapshots == [mailbox.snapshotID] })
        let files = try find(at: now) { $0.user = alice; $0.kinds = [.file] }
        #expect(files.matches.contains { $0.item.path.hasSuffix("/" + file) && $0.snapshots == [whole.snapshotID] })
        let bobs = try find(at: now) { $0.user = bob; $0.kinds = [.mail] }
        #expect(bobs.matches.count == f.sim.tenant.mailbox(upn: bob).count && bobs.matches.allSatisfy { $0.snapshots == [whole.snapshotID] })
        // At the whole tenant's time, the message is there.
        let before = try TenantView(at: whole.snapshot.time, snapshots: snapshots)
        #expect(try find(at: before) { $0.user = alice; $0.kinds = [.mail] }.matches.contains { $0.item.path.hasSuffix(deletedName) })
        await f.close()
    }
}
