import Foundation
import VaultlineCore

/// The tenant as it stood at a point in time, put together from the snapshots that each hold a
/// part of it: a whole-tenant backup holds everything, a run limited to some users holds
/// `/users/<upn>` of each, and a worker of a shared tenant holds one mailbox, OneDrive or site
/// per snapshot. What `--at TIME` of `find` and `m365 restore` reads.
///
/// A part is a snapshot's path (``Snapshot/paths``) below the Graph base, as a tree path:
/// `<base>` is `/`, `<base>/users/<upn>` is `/users/<upn>`, `<base>/users/<upn>/mail` is
/// `/users/<upn>/mail`. A tree path's state at TIME is the newest snapshot at or before TIME
/// with a part that is the path or one of its ancestors, whichever process wrote it.
public struct TenantView: Sendable {
    public struct Part: Sendable, Equatable {
        /// The tree path the snapshot holds, lowercased (UPNs are matched without case).
        public var path: String
        public var snapshotID: String
        public var time: Date
    }

    public let time: Date
    public let graphBase: String
    /// Every part of every snapshot of the tenant at or before `time`, newest first.
    public let parts: [Part]

    /// The view at `time` of the tenant of the newest Microsoft 365 snapshot at or before it.
    /// Throws `notFound` when there is none.
    public init(at time: Date, snapshots: [(id: String, snapshot: Snapshot)]) throws {
        let candidates = snapshots.filter { $0.snapshot.sourceKind == M365Backup.sourceKind && $0.snapshot.time <= time }
            .sorted { ($0.snapshot.time, $0.id) > ($1.snapshot.time, $1.id) }
        guard let base = candidates.lazy.compactMap({ $0.snapshot.paths.first }).first.map(Self.graphBase(of:)) else {
            throw VaultlineError(.notFound, "no Microsoft 365 snapshot at or before \(UTCTimestamp.rfc3339(time))")
        }
        var parts: [Part] = []
        for (id, snapshot) in candidates {
            for path in snapshot.paths where Self.graphBase(of: path) == base {
                parts.append(Part(path: Self.treePath(path, base: base), snapshotID: id, time: snapshot.time))
            }
        }
        self.time = time
        self.graphBase = base
        self.parts = parts
    }

    /// The part that holds `path`'s state at the view's time: the newest whose path is `path`
    /// or an ancestor of it; nil when no snapshot holds it.
    public func owner(of path: String) -> Part? {
        let wanted = Self.normalized(path)
        return parts.first { Self.contains($0.path, wanted) }
    }

    /// The one snapshot from which `path` and everything below it can be restored as it was
    /// at the view's time. Throws `notFound` when no snapshot holds it, and `invalidArgument`
    /// (naming the parts) when a newer snapshot holds a part below it: then its parts are to be
    /// restored one by one.
    public func holder(of path: String) throws -> Part {
        let wanted = Self.normalized(path)
        guard let owner = owner(of: wanted) else {
            throw VaultlineError(.notFound, "no snapshot at or before \(UTCTimestamp.rfc3339(time)) holds this path", object: path)
        }
        // Parts are newest first: those before the owner's are of newer snapshots.
        let newer = parts.prefix { $0.snapshotID != owner.snapshotID }
        let below = Set(newer.filter { $0.path != wanted && Self.contains(wanted, $0.path) }.map(\.path)).sorted()
        guard below.isEmpty else {
            throw VaultlineError(.invalidArgument, "at \(UTCTimestamp.rfc3339(time)) this path's parts come from different snapshots; restore each of: "
                                 + below.joined(separator: ", "), object: path)
        }
        return owner
    }

    /// Whether a found item belongs to the view: `snapshots` (the ones holding its version at
    /// `path`) include the one that holds `path` at the view's time.
    public func holds(_ path: String, in snapshots: [String]) -> Part? {
        guard let owner = owner(of: path) else { return nil }
        return snapshots.contains(owner.snapshotID) ? owner : nil
    }

    /// The Graph base of a snapshot path: what precedes `/users/` or `/sites/`, or all of it.
    static func graphBase(of path: String) -> String {
        for marker in ["/users/", "/sites/"] {
            if let range = path.range(of: marker) { return String(path[..<range.lowerBound]) }
        }
        return path
    }

    static func treePath(_ path: String, base: String) -> String {
        normalized(String(path.dropFirst(base.count)))
    }

    static func normalized(_ path: String) -> String {
        let segments = path.lowercased().split(separator: "/", omittingEmptySubsequences: true)
        return "/" + segments.joined(separator: "/")
    }

    /// Whether tree path `ancestor` is `path` or above it.
    static func contains(_ ancestor: String, _ path: String) -> Bool {
        ancestor == "/" || path == ancestor || path.hasPrefix(ancestor + "/")
    }
}

extension ItemFinder {
    /// Searches the tenant as `view` sees it: each item as the snapshot holding its path at the
    /// view's time has it, once, with that snapshot as its only one.
    public func run(at view: TenantView, snapshots: [(id: String, snapshot: Snapshot)]) throws -> Result {
        let used = Set(view.parts.map(\.snapshotID))
        var result = try run(snapshots: snapshots.filter { used.contains($0.id) })
        result.matches = result.matches.compactMap { match in
            guard let holder = view.holds(match.item.path, in: match.snapshots) else { return nil }
            var held = match
            held.snapshots = [holder.snapshotID]
            held.newest = holder.time
            held.oldest = holder.time
            return held
        }
        return result
    }
}
