import Foundation
import VaultlineGraph

/// One unit of a shared tenant's work: one mailbox (mail, calendars, contacts), one OneDrive or
/// one SharePoint site. Exchange's per-mailbox limits then stay inside the one worker that holds
/// the task. Its id is what the coordinator's rows are keyed by: `mailbox:<upn>`,
/// `onedrive:<upn>`, `site:<name>` (lower case).
public struct WorkTask: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case mailbox, onedrive, site
    }

    public var kind: Kind
    /// The UPN of a mailbox or OneDrive, the site's name as the tree has it under `/sites/`.
    public var name: String

    public init(_ kind: Kind, _ name: String) {
        self.kind = kind
        self.name = name.lowercased()
    }

    public var id: String { kind.rawValue + ":" + name }
    public var description: String { id }

    /// Parses an id; nil for anything else (a row written by something else is not run).
    public init?(id: String) {
        guard let colon = id.firstIndex(of: ":"), let kind = Kind(rawValue: String(id[..<colon])) else { return nil }
        let name = String(id[id.index(after: colon)...])
        guard !name.isEmpty, name.count <= 512 else { return nil }
        self.init(kind, name)
    }

    /// The backup run of this task alone: its snapshot's paths are the task's tree paths
    /// (``M365Backup/snapshotPaths(_:_:)``), so ``TenantView`` puts the tenant together again.
    public func scope(_ base: M365Backup.Options) -> M365Backup.Options {
        var options = base
        switch kind {
        case .mailbox:
            options.users = [name]
            options.onedrive = false
            options.sites = false
        case .onedrive:
            options.users = [name]
            (options.mail, options.calendar, options.contacts) = (false, false, false)
            options.sites = false
        case .site:
            options.users = []
            options.siteNames = [name]
        }
        return options
    }

    /// How often the task is polled when nothing changed: the mail interval for a mailbox, the
    /// drive interval for the others.
    public func baseInterval(_ policy: CollectionSchedule.Policy) -> Double {
        kind == .mailbox ? policy.mailBaseSeconds : policy.driveBaseSeconds
    }
}
