import NIOCore
import Synchronization
import VaultlineCore

/// Reads of a few bytes of a pack (a restore reads one blob at a time) fetch a window of the pack
/// instead: on object storage every request costs a round trip and, at AWS, money, while a disk
/// pays nothing for a small `pread`. A restore reads a file's blobs in the order the backup
/// wrote them, so the next blob is usually in the window already.
final class PackWindows: Sendable {
    struct Window: Sendable {
        var pack: String
        var start: Int64
        var bytes: ByteBuffer
        var used: UInt64
    }

    /// Bytes fetched per window (a default pack of 16 MiB and a bit is one window); reads of
    /// more than a quarter of it go straight through.
    let size: Int
    let capacity: Int
    private let windows = Mutex<(entries: [Window], clock: UInt64)>(([], 0))

    init(size: Int = 32 << 20, capacity: Int = 6) {
        self.size = size
        self.capacity = capacity
    }

    /// Copies `buffer.count` bytes at `offset` of `pack` from a cached window; false when none holds them.
    func copy(_ pack: String, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        windows.withLock { state in
            state.clock += 1
            let clock = state.clock
            for index in state.entries.indices {
                let window = state.entries[index]
                guard window.pack == pack, offset >= window.start else { continue }
                let (end, overflow) = offset.addingReportingOverflow(Int64(buffer.count))
                guard !overflow, end <= window.start + Int64(window.bytes.readableBytes) else { continue }
                let from = Int(offset - window.start)
                window.bytes.withUnsafeReadableBytes { readable in
                    buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: readable[from..<(from + buffer.count)]))
                }
                state.entries[index].used = clock
                return true
            }
            return false
        }
    }

    func insert(_ pack: String, start: Int64, bytes: ByteBuffer) {
        windows.withLock { state in
            state.clock += 1
            if state.entries.count >= capacity, let oldest = state.entries.indices.min(by: { state.entries[$0].used < state.entries[$1].used }) {
                state.entries.remove(at: oldest)
            }
            state.entries.append(Window(pack: pack, start: start, bytes: bytes, used: state.clock))
        }
    }

    func forget(_ pack: String) {
        windows.withLock { $0.entries.removeAll { $0.pack == pack } }
    }
}

extension S3Backend {
    public func read(_ kind: FileKind, _ name: String, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        if kind == .pack, buffer.count < packWindows.size / 4 {
            if packWindows.copy(name, offset: offset, into: buffer) { return }
            // Windows are aligned, so that no byte is fetched twice while its window is kept (a
            // default pack is one window); one past the end of the object comes back short.
            let size = Int64(packWindows.size)
            var start = offset / size * size
            if offset + Int64(buffer.count) > start + size { start = offset }  // a blob across the boundary
            let window = try get(kind, name, offset: start, length: packWindows.size)
            packWindows.insert(name, start: start, bytes: window)
            if packWindows.copy(name, offset: offset, into: buffer) { return }
            throw truncated(kind, name, wanted: buffer.count, at: offset, got: window.readableBytes)
        }
        let body = try get(kind, name, offset: offset, length: buffer.count)
        guard body.readableBytes == buffer.count else { throw truncated(kind, name, wanted: buffer.count, at: offset, got: body.readableBytes) }
        body.withUnsafeReadableBytes { buffer.copyMemory(from: $0) }
    }

    /// A round trip's worth of bytes at loopback-to-datacentre rates: reading through a gap this
    /// size costs less than a second request.
    public var readThroughGap: Int { 2 << 20 }

    /// One ranged GET, its answer handed over as it arrived (no copy, no window kept).
    public func withBytes<R>(_ kind: FileKind, _ name: String, offset: Int64, length: Int, reusing buffer: inout [UInt8],
                             _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let bytes = try get(kind, name, offset: offset, length: length)
        guard bytes.readableBytes == length else { throw truncated(kind, name, wanted: length, at: offset, got: bytes.readableBytes) }
        return try bytes.withUnsafeReadableBytes { try body($0) }
    }

    private func truncated(_ kind: FileKind, _ name: String, wanted: Int, at offset: Int64, got: Int) -> VaultlineError {
        VaultlineError(.corrupt, "object is truncated: wanted \(wanted) bytes at offset \(offset), got \(got)", object: kind.relativePath(name))
    }
}
