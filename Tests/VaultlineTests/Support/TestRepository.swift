import Foundation
import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory removed when the value is deinitialised.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String = "vaultline-test") {
        var template = Array("/tmp/\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }

    deinit { _ = try? Self.remove(path) }

    static func remove(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            chmod(path, 0o700)
            for name in try FileSystem.list(path) { try remove(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

enum Fixtures {
    static let password = Array("correct horse battery staple".utf8)

    /// Small chunks and packs so that tests make many of each; cheap scrypt.
    static var options: Repository.InitOptions {
        var o = Repository.InitOptions()
        o.chunker = .init(minSize: 16 << 10, avgSize: 64 << 10, maxSize: 256 << 10)
        o.packSize = 1 << 20
        o.scryptN = 1 << 10
        o.weakScryptForTests = true
        return o
    }

    static func repository(in dir: TemporaryDirectory, codec: Codec = .zstd) throws -> Repository {
        var o = options
        o.compression = codec
        return try Repository.initialize(path: dir.path + "/repo", password: password, options: o)
    }

    static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = try FileDescriptor(open: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try fd.write(bytes)
    }

    /// A random tree with the shapes that break backup tools: empty and 1-byte files, files
    /// larger than the max chunk, duplicates, sparse (zero) runs, nested and empty directories,
    /// symlinks, odd modes and names.
    static func makeTree(at root: String, seed: UInt64, scale: Int = 1) throws {
        var rng = SplitMix64(seed: seed)
        try FileSystem.makeDirectories(root + "/a/b/c", mode: 0o755)
        try FileSystem.makeDirectories(root + "/empty-dir", mode: 0o755)
        try writeFile(root + "/empty", [])
        try writeFile(root + "/one-byte", [0x42])
        try writeFile(root + "/a/exec.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
        try writeFile(root + "/a/b/private", rng.bytes(5000), mode: 0o600)
        let big = rng.bytes(700_000 * scale)  // > 256 KiB max chunk
        try writeFile(root + "/a/big.bin", big)
        try writeFile(root + "/a/b/c/big-copy.bin", big)
        var sparse = [UInt8](repeating: 0, count: 600_000)
        sparse.replaceSubrange(300_000..<300_100, with: rng.bytes(100))
        try writeFile(root + "/sparse.bin", sparse)
        try writeFile(root + "/name with spaces & ünïcode", rng.bytes(1234))
        for i in 0..<(20 * scale) {
            try writeFile(root + "/a/b/small-\(i).txt", rng.bytes(Int(rng.next() % 40_000)))
        }
        _ = symlink("a/big.bin", root + "/link")
        _ = symlink("/nonexistent/target", root + "/a/dangling")
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        utimensat(AT_FDCWD, root + "/one-byte", &times, 0)
    }

    /// Runs the CLI built beside the tests with the test password; returns its status and stdout.
    static func cli(_ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        p.arguments = args
        p.environment = ["VAULTLINE_PASSWORD": String(decoding: password, as: UTF8.self), "HOME": NSTemporaryDirectory()]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }

    static func backup(_ repo: Repository, _ paths: [String], force: Bool = false) throws -> DirectoryBackup.Result {
        var o = DirectoryBackup.Options(paths: paths)
        o.force = force
        return try DirectoryBackup(repository: repo, options: o).run()
    }
}
