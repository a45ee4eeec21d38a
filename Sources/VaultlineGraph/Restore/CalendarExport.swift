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
        try repository.loadIndex()
        let snapshot = try repository.loadSnapshot(snapshotID)
        let (tree, _) = try Restorer(repository: repository).resolve(snapshot: snapshot, path: path)
        guard let tree else { throw VaultlineError(.invalidArgument, "not a folder in the snapshot", object: path) }
        try FileSystem.makeDirectories(target, mode: 0o755)
        var stats = Stats()
        try exportFolder(tree, name: path.split(separator: "/").last.map(String.init) ?? format.kind + "s", into: target, stats: &stats)
        return stats
    }

    private func exportFolder(_ tree: Tree, name: String, into dir: String, stats: inout Stats) throws {
        let items = tree.nodes.filter { $0.kind == .file && $0.metadata?["graph.kind"] == format.kind }
        if !items.isEmpty {
            let path = dir + "/" + name + "." + format.rawValue
            let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            if format == .ics { try fd.write(Array(ICalendar.header.utf8)) }
            for item in items {
                var bytes: [UInt8] = []
                for id in item.content ?? [] {
                    guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree", object: item.name) }
                    bytes += try repository.readBlob(blob)
                }
                let json: JSONValue
                do { json = try JSONValue.parse(bytes) } catch {
                    throw VaultlineError(.corrupt, "the item's Graph JSON does not parse", object: item.name, cause: error)
                }
                let text = Array((format == .ics ? ICalendar.event(json) : VCard.card(json)).utf8)
                try fd.write(text)
                stats.items += 1
                stats.bytes += UInt64(text.count)
            }
            if format == .ics { try fd.write(Array(ICalendar.footer.utf8)) }
            try fd.sync()
            stats.files += 1
        }
        for sub in tree.nodes where sub.kind == .dir {
            guard let id = sub.subtree else { continue }
            try FileSystem.makeDirectories(dir + "/" + name, mode: 0o755)
            try exportFolder(try repository.loadTree(id), name: sub.name, into: dir + "/" + name, stats: &stats)
        }
    }
}
