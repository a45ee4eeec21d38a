import Foundation
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Restores mail as one mbox file per folder: every `.eml` item directly in a snapshot directory
/// goes into `<target>/<folder path>.mbox`, in received order.
///
/// Format: mboxrd. Each message starts with a `From ` line (`From <sender> <asctime date>`), its
/// bytes follow with CRLF turned into LF, every line matching `^>*From ` gets one more `>`
/// (reversible), and a blank line ends it. Python's `mailbox.mbox`, mutt and Thunderbird read it.
public struct MboxExport {
    public struct Stats: Sendable, Codable {
        public var folders = 0
        public var messages = 0
        public var bytes: UInt64 = 0
    }

    let repository: Repository

    public init(repository: Repository) { self.repository = repository }

    public func export(snapshotID: String, path: String, target: String) throws -> Stats {
        let treeID = try Restorer(repository: repository).folderTree(snapshotID: snapshotID, path: path)
        try FileSystem.makeDirectories(target, mode: 0o755)
        let name = path.split(separator: "/").last.map(String.init) ?? "mailbox"
        var stats = Stats()
        try exportFolder(treeID, name: name, into: target, stats: &stats)
        return stats
    }

    private func exportFolder(_ treeID: String, name: String, into dir: String, stats: inout Stats) throws {
        // Read a tree part at a time, keeping of each message only what the mbox needs (a large
        // folder's nodes carry their Graph JSON), then in received order.
        var messages: [TreeNode] = []
        var subfolders: [TreeNode] = []
        try repository.forEachTreePart(treeID) { part in
            for n in part.nodes {
                if n.kind == .dir {
                    subfolders.append(n)
                } else if n.kind == .file, n.name.hasSuffix(".eml") {
                    var m = TreeNode(name: n.name, kind: .file)
                    m.mtimeNs = n.mtimeNs
                    m.content = n.content
                    messages.append(m)
                }
            }
        }
        messages.sort { ($0.mtimeNs ?? 0, $0.name) < ($1.mtimeNs ?? 0, $1.name) }
        if !messages.isEmpty {
            let path = dir + "/" + name + ".mbox"
            let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            for m in messages {
                let out = Self.entry(try repository.readContent(of: m), received: m.mtimeNs)
                try fd.write(out)
                stats.messages += 1
                stats.bytes += UInt64(out.count)
            }
            try fd.sync()
            stats.folders += 1
        }
        for sub in subfolders {
            guard let id = sub.subtree else { continue }
            try FileSystem.makeDirectories(dir + "/" + name, mode: 0o755)
            try exportFolder(id, name: sub.name, into: dir + "/" + name, stats: &stats)
        }
    }

    /// One mboxrd entry for a message.
    static func entry(_ mime: [UInt8], received: Int64?) -> [UInt8] {
        let date = Date(timeIntervalSince1970: Double(received ?? 0) / 1e9)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE MMM dd HH:mm:ss yyyy"
        var out = Array("From MAILER-DAEMON \(f.string(from: date))\n".utf8)
        out.reserveCapacity(mime.count + 64)
        var lineStart = true
        var i = 0
        while i < mime.count {
            if lineStart {
                // ">*From " gets one more ">".
                var j = i
                while j < mime.count && mime[j] == UInt8(ascii: ">") { j += 1 }
                if mime.count - j >= 5, mime[j..<(j + 5)].elementsEqual("From ".utf8) { out.append(UInt8(ascii: ">")) }
            }
            let b = mime[i]
            if b == 13, i + 1 < mime.count, mime[i + 1] == 10 { i += 1; continue }  // CRLF → LF
            out.append(b)
            lineStart = b == 10
            i += 1
        }
        if out.last != 10 { out.append(10) }
        out.append(10)
        return out
    }
}
