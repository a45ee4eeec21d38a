import Foundation
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Restores events as one iCalendar file per calendar directory (`<name>.ics`) or contacts as one
/// vCard file per contact folder (`<name>.vcf`): every event or contact item directly in a
/// snapshot directory, converted from its Graph JSON (``ICalendar``, ``VCard``), written an item
/// at a time. Subdirectories follow, as `<name>/<sub>.ics`.
public struct CalendarExport {
    public enum Format: String, Sendable {
        case ics, vcf
        var kind: String { self == .ics ? "event" : "contact" }
    }

    public struct Stats: Sendable, Codable {
        public var files = 0
        public var items = 0
        public var bytes: UInt64 = 0
    }

    let repository: Repository
    let format: Format

    public init(repository: Repository, format: Format) {
        self.repository = repository
        self.format = format
    }

    public func export(snapshotID: String, path: String, target: String) throws -> Stats {
        let treeID = try Restorer(repository: repository).folderTree(snapshotID: snapshotID, path: path)
        try FileSystem.makeDirectories(target, mode: 0o755)
        var stats = Stats()
        try exportFolder(treeID, name: path.split(separator: "/").last.map(String.init) ?? format.kind + "s", into: target, stats: &stats)
        return stats
    }

    /// Items are written as each tree part is read (a large calendar is never held whole).
    private func exportFolder(_ treeID: String, name: String, into dir: String, stats: inout Stats) throws {
        // The file is made first and removed again if the folder holds no such item.
        let path = dir + "/" + name + "." + format.rawValue
        let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        if format == .ics { try fd.write(Array(ICalendar.header.utf8)) }
        let before = stats.items
        var subfolders: [TreeNode] = []
        // Series are written last: a master with its cancellations, then its exceptions.
        var masters: [JSONValue] = []
        var instances: [String: [JSONValue]] = [:]
        func write(_ text: String, item: Bool) throws {
            let bytes = Array(text.utf8)
            try fd.write(bytes)
            if item { stats.items += 1 }
            stats.bytes += UInt64(bytes.count)
        }
        try repository.forEachTreePart(treeID) { part in
            for item in part.nodes {
                if item.kind == .dir { subfolders.append(item); continue }
                guard item.kind == .file, item.metadata?["graph.kind"] == format.kind else { continue }
                let bytes = try repository.readContent(of: item)
                let json: JSONValue
                do { json = try JSONValue.parse(bytes) } catch {
                    throw VaultlineError(.corrupt, "the item's Graph JSON does not parse", object: item.name, cause: error)
                }
                guard format == .ics else { try write(VCard.card(json), item: true); continue }
                if let master = json["seriesMasterId"]?.string, ["occurrence", "exception"].contains(json["type"]?.string ?? "") {
                    instances[master, default: []].append(json)
                } else if json["type"]?.string == "seriesMaster" {
                    masters.append(json)
                } else {
                    try write(ICalendar.event(json), item: true)
                }
            }
        }
        for master in masters {
            let held = instances[master["id"]?.string ?? ""] ?? []
            let exceptions = held.filter { $0["type"]?.string == "exception" }
            var exdates: [Date] = []
            if !held.isEmpty, let start = M365Restore.originalStart(master, exception: false),
               let due = GraphRecurrence.occurrences(master["recurrence"], start: start) {
                let kept = Set(held.compactMap { M365Restore.originalStart($0, exception: $0["type"]?.string == "exception") })
                exdates = due.filter { !kept.contains($0) }
            }
            try write(ICalendar.event(master, exdates: exdates), item: true)
            let uid = master["iCalUId"]?.string ?? master["id"]?.string ?? ""
            for exception in exceptions { try write(ICalendar.event(exception, series: uid), item: false) }
        }
        if stats.items == before {
            unlink(path)
        } else {
            if format == .ics { try fd.write(Array(ICalendar.footer.utf8)) }
            try fd.sync()
            stats.files += 1
        }
        for sub in subfolders {
            guard let id = sub.subtree else { continue }
            try FileSystem.makeDirectories(dir + "/" + name, mode: 0o755)
            try exportFolder(id, name: sub.name, into: dir + "/" + name, stats: &stats)
        }
    }
}
