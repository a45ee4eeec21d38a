import AsyncHTTPClient
import NIOCore
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// A pending object's bytes in an unlinked temporary file on the local disk, so that the packs a
/// backup has in flight to object storage (four PUTs, one waiting, one filling: 100 MiB) are not
/// in memory. The file has no name from the start, so nothing is left behind however the
/// process ends. It is streamed to the server a MiB at a time, again on every retry.
final class SpoolFile: Sendable {
    let descriptor: Int32
    let folder: String

    /// A spool file in `folder`; an error when none can be made there.
    init(folder: String) throws {
        var template = Array((folder + "/.vaultline-spool-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw VaultlineError.system("mkstemp", object: folder) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        descriptor = fd
        self.folder = folder
    }

    deinit { _ = close(descriptor) }

    /// Where spool files go: `VAULTLINE_SPOOL_DIR`, else `TMPDIR`, else `/var/tmp` (on a disk by
    /// the FHS, where `/tmp` is often memory); nil for `VAULTLINE_SPOOL_DIR=memory`.
    static func folder(environment: [String: String]) -> String? {
        if let chosen = environment["VAULTLINE_SPOOL_DIR"], !chosen.isEmpty { return chosen == "memory" ? nil : chosen }
        if let temporary = environment["TMPDIR"], temporary.hasPrefix("/") { return temporary }
        return "/var/tmp"
    }

    func append(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try FileDescriptor.writeAll(descriptor, bytes, at: Int64(offset), object: folder + " (spool file)")
    }

    /// `length` bytes at `offset`, read into a new buffer.
    func read(offset: Int, length: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        var done = 0
        while done < length {
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length - done) { target in
                pread(descriptor, target.baseAddress!, length - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("pread", object: folder + " (spool file)")
            }
            guard n > 0 else { throw VaultlineError(.corrupt, "the spool file ended \(length - done) bytes early", object: folder) }
            done += n
        }
        return buffer
    }

    /// A request body that reads `length` bytes from `offset` a MiB at a time, each chunk once
    /// the one before is written (the read is from the page cache, on the event loop).
    func body(offset: Int, length: Int, loop: any EventLoop) -> HTTPClient.Body {
        .stream(contentLength: Int64(length)) { [self] writer in
            self.send(from: offset, to: offset + length, writer: writer, loop: loop)
        }
    }

    private func send(from position: Int, to end: Int, writer: HTTPClient.Body.StreamWriter, loop: any EventLoop) -> EventLoopFuture<Void> {
        guard position < end else { return loop.makeSucceededVoidFuture() }
        let count = min(1 << 20, end - position)
        let chunk: ByteBuffer
        do { chunk = try read(offset: position, length: count) } catch { return loop.makeFailedFuture(error) }
        return writer.write(.byteBuffer(chunk)).flatMap { [self] in
            self.send(from: position + count, to: end, writer: writer, loop: loop)
        }
    }
}
