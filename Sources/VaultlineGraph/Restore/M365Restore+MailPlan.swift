import Foundation
import VaultlineCore

/// A mail restore's dry run: the target folders looked up (never created) and each message
/// decided as the restore would decide it, by `internetMessageId` against what the folder
/// holds (a folder that does not exist yet gets every message).
extension M365Restore {
    /// Where a source folder's messages would go.
    private enum Target {
        case mailboxRoot
        case folder(String)
        /// Not there yet: the restore would create it (and everything below it).
        case missing

        init(_ id: String?) { self = id.map { .folder($0) } ?? .missing }

        /// The parent to look a child up under; nil when the child cannot exist.
        var parent: String?? {
            switch self {
            case .mailboxRoot: .some(nil)
            case .folder(let id): .some(id)
            case .missing: nil
            }
        }
    }

    func planMail(_ plans: [MailFolderPlan], user: String, sourceNames: [String], folderName: String, _ planned: Summary.Collection) async throws -> Summary.Collection {
        var collection = planned
        var base = Target.mailboxRoot
        if options.effectiveDestination == .newFolder { base = Target(try await findMailFolder(user: user, parent: nil, name: folderName)) }
        for (i, name) in sourceNames.enumerated() {
            guard let parent = base.parent else { break }
            let sourceID = i == sourceNames.count - 1 && plans.first?.path.isEmpty == true ? plans.first?.sourceID : nil
            base = Target(try await existingFolder(user: user, parent: parent, name: name, sourceID: sourceID))
        }
        var targets: [String: Target] = ["": base]
        for plan in plans.sorted(by: { $0.path.count < $1.path.count }) {
            var target = base
            if !plan.path.isEmpty {
                target = .missing
                if let parent = (targets[Self.key(Array(plan.path.dropLast()))] ?? base).parent {
                    target = Target(try await existingFolder(user: user, parent: parent, name: plan.path[plan.path.count - 1], sourceID: plan.sourceID))
                }
            }
            targets[Self.key(plan.path)] = target
            advance(items: plan.messages.count)
            let id: String
            switch target {
            case .folder(let folder): id = folder
            case .missing:
                collection.created += plan.messages.count
                continue
            case .mailboxRoot:
                collection.failed += plan.messages.count  // as the restore would: no folder to go to
                continue
            }
            var present: Set<String> = []
            let listing = client.url("users", user, "mailFolders", id, "messages") + "?$select=id,internetMessageId&$top=100"
            _ = try await client.pages(listing, mailbox: user) { page in
                for m in page { if let imid = m["internetMessageId"]?.string { present.insert(imid) } }
            }
            for node in plan.messages {
                let imid = node.metadata?["graph.item"].flatMap { try? JSONValue.parse(Array($0.utf8)) }?["internetMessageId"]?.string
                if let imid, present.contains(imid) {
                    collection.count(options.onlyChanged ? .unchanged : Self.collisionDecision(options.effectiveCollisions))
                } else {
                    collection.created += 1
                }
            }
        }
        return collection
    }

    /// As ``targetFolder``, without creating: in place the folder of the same id if it still
    /// exists, else the child of that name.
    private func existingFolder(user: String, parent: String?, name: String, sourceID: String?) async throws -> String? {
        if options.effectiveDestination == .inPlace, options.toUser == nil, let sourceID,
           let folder = try? await client.json(client.url("users", user, "mailFolders", sourceID), mailbox: user), let id = folder["id"]?.string {
            return id
        }
        return try await findMailFolder(user: user, parent: parent, name: name)
    }

    static func collisionDecision(_ policy: Options.Collisions) -> Decision {
        switch policy {
        case .skip: .skip
        case .copy: .copy
        case .replace: .replace
        }
    }
}
