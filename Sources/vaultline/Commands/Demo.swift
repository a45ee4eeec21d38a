import ArgumentParser
import Foundation
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// The README's main job. Until the Graph adapter lands it runs on a generated local tree:
/// back up, change the tree, back up incrementally, check every byte, restore, and compare.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the end-to-end demo in ./vaultline-demo (local directory source).")

    @Option(help: "Working directory for the demo (recreated).")
    var dir = "vaultline-demo"

    @Option(name: .customLong("size-mib"), help: "Approximate size of the generated source tree in MiB.")
    var sizeMiB = 64

    func run() throws {
        try reporting {
            let base = dir
            if FileSystem.exists(base) {
                guard FileSystem.exists(base + "/.vaultline-demo") else {
                    throw VaultlineError(.alreadyExists, "exists and was not made by the demo; choose another --dir", object: base)
                }
                try removeTree(base)
            }
            try FileSystem.makeDirectories(base + "/source", mode: 0o755)
            try writeFile(base + "/.vaultline-demo", Array("made by vaultline demo\n".utf8))
            let password = Array(encodeHex(try SecureRandom.bytes(16)).utf8)
            try writeFile(base + "/password", password, mode: 0o600)

            print("1. generating a source tree of about \(sizeMiB) MiB in \(base)/source")
            var rng = SplitMix64(seed: 2026)
            try generate(into: base + "/source", mib: sizeMiB, rng: &rng)

            print("2. creating the site-A repository in \(base)/site-a")
            let repo = try Repository.initialize(path: base + "/site-a", password: password)

            print("3. first backup")
            let first = try DirectoryBackup(repository: repo, options: .init(paths: [base + "/source"])).run()
            report(first)

            print("4. changing the tree: one file edited, one deleted, one added, one duplicated")
            try mutate(base + "/source", rng: &rng)

            print("5. incremental backup")
            let second = try DirectoryBackup(repository: repo, options: .init(paths: [base + "/source"])).run()
            report(second)

            print("6. check --read-data")
            let check = try Checker(repository: repo).run(readData: true)
            print("   \(check.packs) packs, \(formatBytes(check.bytesRead)) read, \(check.errors.count) errors")
            guard check.ok else { throw VaultlineError(.corrupt, "check found damage: \(check.errors.first ?? "")") }

            print("7. restoring the latest snapshot to \(base)/restore and comparing")
            let restorer = Restorer(repository: repo)
            try restorer.restore(snapshotID: second.snapshotID, path: "/", target: base + "/restore")
            let compared = try DirectoryComparison.compare(base + "/source", base + "/restore/source")
            print("   \(compared.files) files, \(formatBytes(compared.bytes)) identical (content, mode, mtime)")
            print("done: the repository is in \(base)/site-a; the password is in \(base)/password")
            print("try: vaultline snapshots --repo \(base)/site-a --password-file \(base)/password")
        }
    }

    func report(_ r: DirectoryBackup.Result) {
        let s = r.snapshot.stats
        print("   snapshot \(r.snapshotID.prefix(8)): \(s.files) files (\(s.filesRead) read), added \(formatBytes(s.newRawBytes)) raw → \(formatBytes(s.newStoredBytes)) stored, \(String(format: "%.2f", s.durationSeconds)) s")
    }

    func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try fd.write(bytes)
    }

    func generate(into root: String, mib: Int, rng: inout SplitMix64) throws {
        let words = ["backup", "restore", "mailbox", "quarterly", "report", "invoice", "meeting", "agenda", "the", "of",
                     "and", "to", "please", "review", "attached", "thanks", "regards", "tenant", "site", "contract"]
        let textBudget = mib << 19, binBudget = mib << 19
        var written = 0, n = 0
        while written < textBudget {
            let folder = root + "/mail/folder-\(n % 7)" + (n % 3 == 0 ? "/archive" : "")
            try FileSystem.makeDirectories(folder, mode: 0o755)
            var body = "From: user\(n % 13)@example.com\r\nSubject: \(words[n % words.count]) \(n)\r\n\r\n"
            for _ in 0..<(2000 + Int(rng.next() % 20000)) { body += words[Int(rng.next() % UInt64(words.count))] + " " }
            try writeFile(folder + "/message-\(n).eml", Array(body.utf8))
            written += body.utf8.count
            n += 1
        }
        try FileSystem.makeDirectories(root + "/files/nested/deeper", mode: 0o755)
        var b = 0, i = 0
        while b < binBudget {
            let size = 1 << 20 + Int(rng.next() % UInt64(6 << 20))
            let data = rng.bytes(size)
            try writeFile(root + "/files/blob-\(i).bin", data)
            if i % 3 == 0 { try writeFile(root + "/files/nested/deeper/copy-of-blob-\(i).bin", data) }
            b += size
            i += 1
        }
        try writeFile(root + "/files/empty", [])
        _ = symlink("blob-0.bin", root + "/files/link-to-blob-0")
    }

    func mutate(_ root: String, rng: inout SplitMix64) throws {
        let fd = try FileDescriptor(open: root + "/files/blob-1.bin", flags: O_WRONLY | O_APPEND)
        try fd.write(rng.bytes(100_000))
        unlink(root + "/mail/folder-1/message-1.eml")
        try writeFile(root + "/mail/folder-2/new-message.eml", Array("Subject: new\r\n\r\nhello".utf8))
        let copy = try FileSystem.readFile(root + "/files/blob-2.bin")
        try writeFile(root + "/files/nested/blob-2-again.bin", copy)
    }

    func removeTree(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in try FileSystem.list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw VaultlineError.system("rmdir", object: path) }
        } else {
            chmod(path, 0o600)
            guard unlink(path) == 0 else { throw VaultlineError.system("unlink", object: path) }
        }
    }
}
