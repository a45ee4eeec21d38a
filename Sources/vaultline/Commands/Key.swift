import ArgumentParser
import Foundation
import VaultlineCore

struct Key: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage key slots (one per password).",
        subcommands: [Add.self, List.self, Remove.self, Passwd.self])

    static func newPassword(_ file: String?) throws -> [UInt8] {
        try Secrets.read(file: file, fileVariable: "VAULTLINE_NEW_PASSWORD_FILE", variable: "VAULTLINE_NEW_PASSWORD", prompt: "new password: ")
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a key slot for another password.")
        @OptionGroup var repository: RepositoryOptions
        @Option(help: "File holding the new password (or VAULTLINE_NEW_PASSWORD_FILE / VAULTLINE_NEW_PASSWORD).")
        var newPasswordFile: String?

        func run() throws {
            try reporting {
                let repo = try repository.open()
                let name = try repo.addKey(password: try Key.newPassword(newPasswordFile))
                if repository.json { try printJSON(["added": name]) } else { print("added key slot \(name.prefix(8))") }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List key slots.")
        @OptionGroup var repository: RepositoryOptions

        func run() throws {
            try reporting {
                let repo = try repository.open()
                let keys = try repo.listKeys()
                if repository.json {
                    try printJSON(keys.map { KeyRow(name: $0.name, current: $0.name == repo.keySlot, created: $0.slot.created, host: $0.slot.host, username: $0.slot.username, scryptN: $0.slot.kdf.n) })
                    return
                }
                for (name, slot) in keys {
                    print("\(name == repo.keySlot ? "*" : " ") \(name.prefix(8))  \(slot.username)@\(slot.host)  \(slot.created)  scrypt N=\(slot.kdf.n) r=\(slot.kdf.r) p=\(slot.kdf.p)")
                }
            }
        }
    }

    struct KeyRow: Encodable {
        var name: String, current: Bool, created: Date, host: String, username: String, scryptN: UInt64
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key slot (not the one in use).")
        @OptionGroup var repository: RepositoryOptions
        @Argument(help: "Key slot name or prefix.")
        var name: String

        func run() throws {
            try reporting {
                let repo = try repository.open()
                try repo.removeKey(name)
                if !repository.json { print("removed key slot \(name)") }
            }
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change the password of the key slot in use.")
        @OptionGroup var repository: RepositoryOptions
        @Option(help: "File holding the new password (or VAULTLINE_NEW_PASSWORD_FILE / VAULTLINE_NEW_PASSWORD).")
        var newPasswordFile: String?

        func run() throws {
            try reporting {
                let repo = try repository.open()
                let name = try repo.changePassword(try Key.newPassword(newPasswordFile))
                if repository.json { try printJSON(["slot": name]) } else { print("password changed; new key slot \(name.prefix(8))") }
            }
        }
    }
}
