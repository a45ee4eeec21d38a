#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import VaultlineCore

/// A file being received: appended to `incoming/<kind>-<name>.partial`, hashed back from the
/// disk when complete, and committed under its final name only when the hash matches
/// (docs/PROTOCOL.md, "Transfer").
final class IncomingFile: @unchecked Sendable {
    // @unchecked: used by one connection task at a time (the repository's `active` set
    // guarantees one IncomingFile per name), and handed to the commit thread only after the
    // last append.
    let repository: ReplicaRepository
    let ref: FileRef
    let size: Int64
    let path: String
    private var fd: Int32
    /// Stages what arrives and writes it in whole buffers, direct to the disk where the file
    /// system allows (docs/PROTOCOL.md, "Transfer" §2).
    private let writer: DirectFileWriter

    init(repository: ReplicaRepository, ref: FileRef, size: Int64) throws {
        self.repository = repository
        self.ref = ref
        self.size = size
        path = repository.partialPath(ref)
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.systemError("open", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = Self.systemError("fstat", path)
            close(fd)
            throw e
        }
        var offset = Int64(st.st_size)
        if offset > size {
            // Not a prefix of this file (a partial from a bug or a damaged disk): start again.
            _ = ftruncate(fd, 0)
            offset = 0
        }
        writer = DirectFileWriter(fd: fd, path: path, offset: offset, bufferSize: Self.stagingBuffer)
    }

    deinit { suspend() }

    /// The bytes of one staging buffer (two per transfer: one filling, one being written).
    /// 1 MiB: direct writes of 1 MiB ran at the disk's speed here (measured with dd), and 16
    /// transfers of a connection then stage at most 32 MiB.
    static let stagingBuffer = 1 << 20

    /// The offset the next DATA frame must have: the length of what was received so far.
    var offset: Int64 { writer.offset }

    var isComplete: Bool { offset == size }

    /// Appends one DATA payload that starts at `at`.
    func append(_ data: ByteBuffer, at: Int64) throws {
        guard at == offset else {
            throw ReplicationError(.malformed, "DATA at offset \(at), expected \(offset)", object: ref.description)
        }
        guard at + Int64(data.readableBytes) <= size else {
            throw ReplicationError(.malformed, "DATA past the offered size \(size)", object: ref.description)
        }
        do {
            try data.withUnsafeReadableBytes { try writer.append($0) }
        } catch {
            throw Self.wrap(error, path)
        }
        repository.appendedBytes.add(Int64(data.readableBytes), ordering: .relaxed)
    }

    /// Ends a transfer that will not complete on this connection (a cut, a bad DATA frame):
    /// what is staged goes to the partial file, which stays a prefix of the file for the next
    /// OFFER to resume from. Call it before the name is released, so that no other connection
    /// opens the partial file while bytes are still on their way to it.
    func suspend() {
        guard fd >= 0 else { return }
        try? writer.flush()
        close(fd)
        fd = -1
    }

    /// Makes the file durable under its name. Blocking (fsync, a read of the whole file):
    /// run it off the event loop. Throws `hashMismatch` (and removes the partial file) when
    /// the bytes on disk do not hash to the name.
    func commit() throws {
        precondition(isComplete)
        do { try writer.flush() } catch { throw Self.wrap(error, path) }
        guard fsync(fd) == 0 else { throw Self.systemError("fsync", path) }
        close(fd)
        fd = -1
        repository.receivedFileFault?(path)
        let digest = try Self.hashFile(path)
        guard digest == ref.name else {
            unlink(path)
            throw ReplicationError(.hashMismatch, "received bytes hash to \(digest.hex)", object: ref.description)
        }
        if ref.kind == .config { try checkConfig() }
        let final = repository.path(ref)
        guard chmod(path, 0o400) == 0 else { throw Self.systemError("chmod", path) }
        if link(path, final) != 0 {
            guard errno == EEXIST else { throw Self.systemError("link", final) }
            // EEXIST: for a content-addressed name, the same content; nothing is replaced.
            // `config` keeps a fixed name, so another connection may have linked another
            // config first: only the first one stands, and this one is refused.
            if ref.kind == .config, try Self.hashFile(final) != ref.name {
                unlink(path)
                throw ReplicationError(.conflict, "another config was committed first: a repository's config never changes", object: "config")
            }
        }
        let dir = String(final[..<(final.lastIndex(of: "/") ?? final.endIndex)])
        do { try FileSystem.syncDirectory(dir) } catch { throw ReplicationError(.io, "cannot sync the folder", object: dir, cause: error) }
        unlink(path)
        repository.didCommit(ref)
    }

    /// A pushed config must be one of this repository: JSON whose `id` is the repository id
    /// the connection's HELLO named (the folder it is kept in), so that `restore --repo
    /// <root>/<id>` opens what its path says.
    private func checkConfig() throws {
        let id = String(repository.directory.split(separator: "/").last ?? "")
        let config: RepositoryConfig
        do {
            config = try RepositoryConfig.decode(try FileSystem.readFile(path), object: "config")
        } catch {
            unlink(path)
            throw ReplicationError(.invalidName, "the offered config is not a repository config", object: "config")
        }
        guard config.id == id else {
            unlink(path)
            throw ReplicationError(.invalidName, "the offered config is repository \(config.id.prefix(64)), this connection's HELLO named \(id)", object: "config")
        }
    }

    /// The read-back's buffer: large direct reads (4 MiB) keep the disk streaming.
    static let readBackBuffer = 4 << 20

    /// SHA-256 of a file as the disk returns it: read with `O_DIRECT` where the file system
    /// allows, so that the check covers the medium, not pages the writer left in memory (and
    /// fills no page cache). Through the page cache elsewhere (tmpfs).
    static func hashFile(_ path: String) throws -> Bytes32 {
        let hasher = try VaultlineCore.SHA256.Hasher()
        do {
            try DirectIO.readAll(path, bufferSize: readBackBuffer) { hasher.update($0) }
        } catch {
            throw wrap(error, path)
        }
        return hasher.finalize()
    }

    /// A storage error as this protocol's: `noSpace` stays `noSpace`, the rest is `io`.
    static func wrap(_ error: any Error, _ path: String) -> ReplicationError {
        if let e = error as? ReplicationError { return e }
        let code = (error as? VaultlineError)?.code == .noSpace ? ReplicationError.Code.noSpace : .io
        return ReplicationError(code, (error as? VaultlineError)?.message ?? "\(error)", object: path, cause: error)
    }

    static func systemError(_ call: String, _ path: String) -> ReplicationError {
        let e = VaultlineError.system(call, object: path)
        return ReplicationError(e.code == .noSpace ? .noSpace : .io, e.message, object: path, cause: e)
    }
}
