import Foundation
import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// The direct-I/O writer: whatever the sizes of the appends, the alignment of the start and
/// the file system, the file holds exactly what was appended, and always a prefix of it.
struct DirectFileWriterTests {
    /// Appends `data` in pieces of random sizes (1 byte to 3 buffers) and returns the file.
    private static func write(_ data: [UInt8], to path: String, startingAt start: Int = 0, bufferSize: Int, direct: Bool = true, seed: UInt64) throws -> (bytes: [UInt8], wasDirect: Bool) {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        if start > 0 { _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, start, 0) } }
        let writer = DirectFileWriter(fd: fd, path: path, offset: Int64(start), bufferSize: bufferSize, direct: direct)
        var rng = SplitMix64(seed: seed)
        var at = start
        try data.withUnsafeBytes { all in
            while at < data.count {
                let n = min(data.count - at, 1 + Int(rng.next() % UInt64(3 * bufferSize)))
                try writer.append(UnsafeRawBufferPointer(rebasing: all[at..<(at + n)]))
                at += n
                #expect(writer.offset == Int64(at))
                // Now and then a flush in the middle (as at a cut), at whatever offset it is.
                if rng.next() % 5 == 0 {
                    try writer.flush()
                    #expect(try FileDescriptor(open: path, flags: O_RDONLY).size() == Int64(at))
                }
            }
        }
        try writer.flush()
        return (try FileSystem.readFile(path), writer.isDirect)
    }

    @Test func appendsOfAnySizeFromAnyOffsetLandExactly() throws {
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 3)
        let data = rng.bytes(3 * 1_048_576 + 4_321)
        for (case_, start) in [0, 1, 4095, 4096, 10_001, 1_048_576 + 7].enumerated() {
            let path = dir.path + "/file-\(case_)"
            let result = try Self.write(data, to: path, startingAt: start, bufferSize: 5 * 4096, seed: UInt64(case_))
            #expect(result.bytes == data, "start \(start)")
            // /tmp here is ext4, which takes O_DIRECT; the test suite must exercise that path.
            if DirectIO.isEnabled, Self.fileSystemTakesDirectIO(dir.path) { #expect(result.wasDirect) }
        }
        let buffered = try Self.write(data, to: dir.path + "/buffered", startingAt: 777, bufferSize: 4096, direct: false, seed: 9)
        #expect(buffered.bytes == data && !buffered.wasDirect)
    }

    @Test func aReadBackReturnsTheFileWhateverItsLength() throws {
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 4)
        for length in [0, 1, 4096, 4097, 3 * 1_048_576 + 1] {
            let data = rng.bytes(length)
            try Fixtures.writeFile(dir.path + "/f", data)
            var back: [UInt8] = []
            var pieces = 0
            try DirectIO.readAll(dir.path + "/f", bufferSize: 1 << 20) { back += $0; pieces += 1 }
            #expect(back == data, "length \(length)")
            #expect(pieces == (length + (1 << 20) - 1) >> 20)
        }
        #expect(throws: VaultlineError.self) { try DirectIO.readAll(dir.path + "/missing") { _ in } }
    }

    /// A write that fails stops every later one: the file stays a prefix, the error has the code.
    @Test func aFailedWriteIsReportedAndNothingAfterItIsWritten() throws {
        let dir = TemporaryDirectory()
        let path = dir.path + "/read-only"
        try Fixtures.writeFile(path, [])
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let writer = DirectFileWriter(fd: fd, path: path, offset: 0, bufferSize: 4096)
        let bytes = [UInt8](repeating: 7, count: 10_000)
        // The first full buffer goes to the queue; its failure shows at the next hand-over or flush.
        let error = #expect(throws: VaultlineError.self) {
            try bytes.withUnsafeBytes { try writer.append($0) }
            try writer.flush()
        }
        #expect(error?.code == .io && error?.errno == EBADF && error?.object == path)
        #expect(throws: VaultlineError.self) { try bytes.withUnsafeBytes { try writer.append($0) }; try writer.flush() }
        #expect(try FileSystem.readFile(path).isEmpty)
    }

    /// On tmpfs (which may take or refuse O_DIRECT, by kernel) the bytes land the same, and a
    /// full one is `noSpace` with a prefix on the file.
    @Test func onTmpfsTheBytesLandAndAFullOneIsNoSpace() throws {
        let dir = TemporaryDirectory()
        let mount = dir.path + "/tmpfs"
        try FileSystem.makeDirectories(mount)
        guard FaultTests.shell("mount -t tmpfs -o size=2m vaultline-direct \(mount)") == 0 else { return }
        defer { _ = FaultTests.shell("umount -l \(mount)") }
        var rng = SplitMix64(seed: 5)
        let data = rng.bytes(1_000_003)
        #expect(try Self.write(data, to: mount + "/fits", startingAt: 5, bufferSize: 8192, seed: 1).bytes == data)
        let big = rng.bytes(3 << 20)
        let path = mount + "/too-big"
        let error = #expect(throws: VaultlineError.self) { _ = try Self.write(big, to: path, bufferSize: 65536, seed: 2) }
        #expect(error?.code == .noSpace)
        let kept = try FileSystem.readFile(path)
        #expect(kept.count < big.count && Array(big.prefix(kept.count)) == kept)
    }

    static func fileSystemTakesDirectIO(_ directory: String) -> Bool {
        let fd = open(directory + "/.probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        defer { close(fd); unlink(directory + "/.probe") }
        return fd >= 0 && DirectIO.set(fd, direct: true)
    }
}
