import ArgumentParser
import Foundation
import VaultlineCore

struct Cat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a repository object (for debugging): config, key, snapshot, index, pack, tree or blob.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: "config | key NAME | snapshot ID | index NAME | pack NAME | tree ID | blob ID")
    var kind: String

    @Argument(help: "The object's name or id.")
    var name: String?

    func run() throws {
        try reporting {
            let repo = try repository.open()
            func need() throws -> String {
                guard let name else { throw VaultlineError(.invalidArgument, "cat \(kind) needs a name") }
                return name
            }
            switch kind {
            case "config":
                try printJSON(repo.config)
            case "key":
                let slots = try repo.listKeys().filter { $0.name.hasPrefix(try need()) }
                guard let slot = slots.first else { throw VaultlineError(.notFound, "no such key slot", object: name) }
                try printJSON(slot.slot)
            case "snapshot":
                try printJSON(try repo.loadSnapshot(try repo.resolveSnapshot(try need())))
            case "index":
                let packs = try repo.readIndexFile(try need())
                try printJSON(packs.map { PackListing(id: $0.id.hex, entries: $0.entries) })
            case "pack":
                let (_, entries) = try PackReader.readHeader(backend: repo.backend, pack: try need(), key: repo.key)
                try printJSON(PackListing(id: try need(), entries: entries))
            case "tree", "blob":
                try repo.loadIndex()
                guard let id = Bytes32(hex: try need()) else { throw VaultlineError(.invalidArgument, "blob ids are 64 hex digits", object: name) }
                let bytes = try repo.readBlob(id)
                FileHandle.standardOutput.write(Data(bytes))
                if kind == "tree" { print() }
            default:
                throw VaultlineError(.invalidArgument, "unknown object kind \(kind)")
            }
        }
    }
}

struct PackListing: Encodable {
    struct Entry: Encodable {
        var type: String, codec: String, id: String, offset: UInt32, storedLength: UInt32, rawLength: UInt32
    }
    var id: String
    var entries: [Entry]
    init(id: String, entries: [PackEntry]) {
        self.id = id
        self.entries = entries.map {
            Entry(type: $0.type.description, codec: $0.codec.description, id: $0.id.hex, offset: $0.offset,
                  storedLength: $0.storedLength, rawLength: $0.rawLength)
        }
    }
}
