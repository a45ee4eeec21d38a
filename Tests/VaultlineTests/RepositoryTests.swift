import Foundation
import Testing
@testable import VaultlineCore

@Suite struct RepositoryTests {
    @Test func aTreesDirectoriesDecodeAloneAsTheyDoInTheWholeTree() throws {
        var file = TreeNode(name: "m.eml", kind: .file)
        file.content = [String(repeating: "ab", count: 32)]
        file.metadata = ["graph.item": "{\"subject\": \"x\"}"]
        var dir = TreeNode(name: "Inbox", kind: .dir)
        dir.subtree = String(repeating: "cd", count: 32)
        dir.metadata = ["graph.id": "AAMk/1+=", "graph.name": "Inbox"]
        dir.mode = 0o755
        var damaged = TreeNode(name: "Lost", kind: .dir)
        damaged.damaged = "tree unreadable"
        let link = TreeNode(name: "l", kind: .symlink)
        let bytes = try Tree(nodes: [file, dir, damaged, link]).encoded()
        let whole = try Tree.decode(bytes, id: "t").nodes.filter { $0.kind == .dir }
        #expect(try Tree.directories(bytes, id: "t") == whole)
        #expect(whole.count == 2)
        expectError(VaultlineError.self, .corrupt) { try Tree.directories(Array("{\"nodes\": 3}".utf8), id: "t") }
    }

    @Test func initThenOpenWithThePassword() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let again = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
        #expect(again.config == repo.config)
        #expect(again.key.idKey == repo.key.idKey)
        #expect(again.key.chunkerSeed == repo.key.chunkerSeed)
    }

    /// Format 2 (BLAKE3 ids, the default) and format 1 (HMAC-SHA256 ids, still written on
    /// request and read forever): each stores its function in the config, computes the ids the
    /// format says, and backs up, verifies every blob and restores; a config whose version and
    /// blob-id function disagree is refused.
    @Test(arguments: [BlobIDFunction.blake3, .hmacSHA256])
    func bothBlobIDFormatsBackUpVerifyAndRestore(_ function: BlobIDFunction) throws {
        let dir = TemporaryDirectory()
        var options = Fixtures.options
        options.blobIDs = function
        let repo = try Repository.initialize(path: dir.path + "/repo", password: Fixtures.password, options: options)
        let stored = String(decoding: try repo.backend.read(.config, "config"), as: UTF8.self)
        #expect(repo.config.version == (function == .blake3 ? 2 : 1))
        #expect(stored.contains("\"blobIDs\":\"blake3-keyed\"") == (function == .blake3), "\(stored)")
        let reopened = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
        #expect(reopened.key.blobIDs == function)
        let sample = Array("an item worth keeping".utf8)
        let id = sample.withUnsafeBytes { reopened.key.blobID($0) }
        let expected = sample.withUnsafeBytes {
            function == .blake3 ? BLAKE3.keyedHash(key: reopened.key.idKey, $0) : HMACSHA256.mac(key: reopened.key.idKey, $0)
        }
        #expect(id == expected)

        try Fixtures.makeTree(at: dir.path + "/src", seed: 7)
        let result = try Fixtures.backup(reopened, [dir.path + "/src"])
        #expect(try Checker(repository: reopened).run(readData: true).ok)
        try Restorer(repository: reopened).restore(snapshotID: result.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")

        // A version that does not match the blob-id function is a damaged config, not a guess.
        var wrong = repo.config
        wrong.version = function == .blake3 ? 1 : 2
        try repo.backend.delete(.config, "config")
        try repo.backend.writeIfAbsent(.config, "config", try StoredJSON.encode(wrong))
        expectError(VaultlineError.self, .corrupt) { try Repository.open(path: dir.path + "/repo", password: Fixtures.password) }
    }

    @Test func wrongPasswordIsRefused() throws {
        let dir = TemporaryDirectory()
        _ = try Fixtures.repository(in: dir)
        expectError(VaultlineError.self, .wrongPassword) { try Repository.open(path: dir.path + "/repo", password: Array("nope".utf8)) }
    }

    @Test func pathWithoutRepositoryIsNamed() throws {
        let dir = TemporaryDirectory()
        let error = expectError(VaultlineError.self, .notFound) { try Repository.open(path: dir.path, password: Fixtures.password) }
        #expect(error?.object == dir.path)
    }

    @Test func initRefusesExistingRepositoryAndNonEmptyDirectory() throws {
        let dir = TemporaryDirectory()
        _ = try Fixtures.repository(in: dir)
        expectError(VaultlineError.self, .alreadyExists) { try Fixtures.repository(in: dir) }
        try Fixtures.writeFile(dir.path + "/stuff", [1])
        expectError(VaultlineError.self, .alreadyExists) {
            try Repository.initialize(path: dir.path, password: Fixtures.password, options: Fixtures.options)
        }
    }

    @Test func keySlotsAddChangeRemove() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let second = try repo.addKey(password: Array("second".utf8), scryptN: 1 << 10, weakForTests: true)
        let viaSecond = try Repository.open(path: dir.path + "/repo", password: Array("second".utf8))
        #expect(viaSecond.keySlot == second)
        #expect(viaSecond.key.encryptionKey == repo.key.encryptionKey)
        // The slot in use cannot be removed; another one can.
        expectError(VaultlineError.self, .invalidArgument) { try viaSecond.removeKey(second) }
        try viaSecond.removeKey(repo.keySlot)
        expectError(VaultlineError.self, .wrongPassword) { try Repository.open(path: dir.path + "/repo", password: Fixtures.password) }
        // passwd replaces the slot in use.
        _ = try viaSecond.changePassword(Array("third".utf8), scryptN: 1 << 10, weakForTests: true)
        expectError(VaultlineError.self, .wrongPassword) { try Repository.open(path: dir.path + "/repo", password: Array("second".utf8)) }
        #expect(try Repository.open(path: dir.path + "/repo", password: Array("third".utf8)).listKeys().count == 1)
    }

    /// A key slot asking for scrypt beyond what a password slot needs is refused before any
    /// work (it could make `open` take 16 GiB and minutes), and a new slot below 2^15 cannot be
    /// made, whatever the environment says.
    @Test func keySlotScryptBoundsAndNoWeakNewSlots() throws {
        #expect(Scrypt.acceptable(n: 1 << 15, r: 8, p: 1))
        #expect(Scrypt.acceptable(n: 1 << 18, r: 8, p: 1))  // 256 MiB, the most memory
        let hostile: [[UInt64]] = [[1 << 22, 32, 16], [1 << 21, 8, 1], [1 << 19, 8, 1], [1 << 16, 8, 16], [1 << 15, 8, 0],
                                   [3 << 14, 8, 1], [.max, .max, .max], [1 << 63, 1, 1]]
        for k in hostile { #expect(!Scrypt.acceptable(n: k[0], r: k[1], p: k[2]), "\(k)") }
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let name = try #require(try repo.listKeys().first?.name)
        let path = dir.path + "/repo/keys/" + name
        var slot = try JSONSerialization.jsonObject(with: Data(try FileSystem.readFile(path))) as? [String: Any] ?? [:]
        var kdf = slot["kdf"] as? [String: Any] ?? [:]
        kdf["n"] = 1 << 22
        kdf["r"] = 32
        kdf["p"] = 16
        slot["kdf"] = kdf
        // A slot is named by its SHA-256: the hostile one is written under its own name.
        let hostileSlot = Array(try JSONSerialization.data(withJSONObject: slot))
        unlink(path)
        try Fixtures.writeFile(dir.path + "/repo/keys/" + SHA256.hash(hostileSlot).hex, hostileSlot)
        let started = Date()
        do {
            _ = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
            Issue.record("a hostile key slot opened")
        } catch let error as VaultlineError {
            #expect(error.code == .corrupt && error.message.contains("beyond what a password slot needs"), "\(error)")
        }
        #expect(Date().timeIntervalSince(started) < 1, "refused before deriving anything")

        // No new slot below 2^15 through the public API.
        expectError(VaultlineError.self, .invalidArgument) { try repo.addKey(password: Array("weak".utf8), scryptN: 1 << 10) }
        var options = Repository.InitOptions()
        options.scryptN = 2
        expectError(VaultlineError.self, .invalidArgument) { try Repository.initialize(path: dir.path + "/weak", password: Fixtures.password, options: options) }
    }

    /// A local backend whose lock writes fail while `failing` is set (a full or read-only disk).
    final class LockWritesFail: Backend, @unchecked Sendable {  // `failing` is set by the test thread only while no refresh runs
        let inner: LocalBackend
        var failing = false
        init(_ root: String) { inner = LocalBackend(root: root) }
        func list(_ kind: FileKind) throws -> [String] { try inner.list(kind) }
        func stat(_ kind: FileKind, _ name: String) throws -> Int64? { try inner.stat(kind, name) }
        func read(_ kind: FileKind, _ name: String, offset: Int64, length: Int?) throws -> [UInt8] { try inner.read(kind, name, offset: offset, length: length) }
        func read(_ kind: FileKind, _ name: String, into buffer: inout [UInt8]) throws -> Int { try inner.read(kind, name, into: &buffer) }
        func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
            if failing && kind == .lock { throw VaultlineError(.noSpace, "no space left on device", object: "locks/\(name)") }
            return try inner.writeIfAbsent(kind, name, bytes)
        }
        func modified(_ kind: FileKind, _ name: String) throws -> Date? { try inner.modified(kind, name) }
        func delete(_ kind: FileKind, _ name: String) throws { try inner.delete(kind, name) }
        func beginWrite(_ kind: FileKind) throws -> any BackendPendingFile { try inner.beginWrite(kind) }
    }

    /// A lock that stopped refreshing was silent: after 30 minutes others took it for stale
    /// while the run went on. Missed refreshes are counted and a run checks them before it
    /// commits.
    @Test func aLockThatCannotBeRefreshedStopsTheRun() throws {
        let dir = TemporaryDirectory()
        _ = try Fixtures.repository(in: dir)
        let backend = LockWritesFail(dir.path + "/repo")
        let lock = try RepositoryLock.acquire(backend, exclusive: false, command: "test")
        defer { lock.release() }
        let first = lock.name
        backend.failing = true
        lock.refresh()
        try lock.ensureHeld()  // one missed refresh is tolerated
        lock.refresh()
        do {
            try lock.ensureHeld()
            Issue.record("two missed refreshes went unnoticed")
        } catch let error as VaultlineError {
            #expect(error.code == .locked)
            #expect(error.message.contains("no space left on device"), "\(error)")
        }
        let locks = try backend.list(.lock)
        #expect(lock.name == first && locks == [first], "the old lock file stays until a refresh works")
        backend.failing = false
        lock.refresh()
        try lock.ensureHeld()
        let after = try backend.list(.lock)
        #expect(lock.name != first && after == [lock.name])
    }

    @Test func exclusiveLockExcludesOthersAndStaleLocksAreIgnored() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let shared = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "test")
        let shared2 = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "test")
        expectError(VaultlineError.self, .locked) { try RepositoryLock.acquire(repo.backend, exclusive: true, command: "prune") }
        shared.release()
        shared2.release()
        let exclusive = try RepositoryLock.acquire(repo.backend, exclusive: true, command: "prune")
        expectError(VaultlineError.self, .locked) { try RepositoryLock.acquire(repo.backend, exclusive: false, command: "backup") }
        exclusive.release()
        // A lock left by a process that no longer exists does not block.
        let dead = RepositoryLock.Record(exclusive: true, host: FileSystem.hostName(), pid: 999_999_999, time: .now, command: "crashed")
        try repo.backend.writeIfAbsent(.lock, "deadbeef", try StoredJSON.encode(dead))
        let after = try RepositoryLock.acquire(repo.backend, exclusive: true, command: "prune")
        after.release()
        #expect(try RepositoryLock.removeStale(repo.backend) == ["deadbeef"])
    }

    @Test func refreshedLockKeepsOneFileWithAFreshTime() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let lock = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "backup")
        let first = lock.name
        lock.refresh()
        #expect(lock.name != first)
        #expect(try repo.backend.list(.lock) == [lock.name])
        lock.release()
        #expect(try repo.backend.list(.lock).isEmpty)
    }

    @Test func backendRejectsNamesThatEscape() throws {
        let dir = TemporaryDirectory()
        let backend = LocalBackend(root: dir.path)
        try backend.createLayout()
        for bad in ["../config", "/etc/passwd", String(repeating: "g", count: 64), "ab"] {
            expectError(VaultlineError.self, .invalidArgument) { try backend.writeIfAbsent(.index, bad, [1]) }
        }
        let name = SHA256.hash([1]).hex
        #expect(try backend.writeIfAbsent(.index, name, [1]))
        #expect(try !backend.writeIfAbsent(.index, name, [2]))
        #expect(try backend.read(.index, name) == [1])
    }
}
