import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One file of a restore: created empty when the tree walk reaches it, filled with `pwrite` by
/// whichever thread holds each of its blobs (each opens it again, and refuses anything but the
/// file it created: no symlink, no other inode swapped in), and finished (size checked,
/// metadata applied) by the thread that writes its last one.
final class RestoringFile: Sendable {
    /// The node without its content list (the plan holds that).
    let node: TreeNode
    let path: String
    let device: UInt64
    let inode: UInt64
    /// Blob references not yet written; the thread that takes it to zero finishes the file.
    let remaining: Atomic<Int>
    let written = Atomic<UInt64>(0)

    init(node: TreeNode, path: String, references: Int) throws {
        // Replace, never write through: an existing symlink at `path` must not redirect the data.
        unlink(path)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VaultlineError.system("open", object: path) }
        defer { _ = close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw VaultlineError.system("fstat", object: path) }
        var bare = node
        bare.content = nil
        self.node = bare
        self.path = path
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        remaining = Atomic(references)
    }

    /// Opens the file for writing; an error when what is at `path` is not the file created.
    func open() throws -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw VaultlineError.system("open", object: path) }
        var status = stat()
        guard fstat(fd, &status) == 0, UInt64(status.st_dev) == device, UInt64(status.st_ino) == inode else {
            _ = close(fd)
            throw VaultlineError(.alreadyExists, "was replaced by another file during the restore", object: path)
        }
        return fd
    }

    /// Writes all of `bytes` at `offset` through `fd` (one this file opened).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, to fd: Int32) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
        guard !overflow, end <= UInt64(Int64.max) else { throw VaultlineError(.corrupt, "a blob past 2^63 bytes into the file", object: path) }
        try FileDescriptor.writeAll(fd, bytes, at: Int64(offset), object: path)
        written.add(UInt64(bytes.count), ordering: .relaxed)
    }

    /// True for the caller that wrote the file's last blob reference.
    func wroteReference() -> Bool {
        remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0
    }
}

/// The files one pack job writes to, each opened once for the job and closed at its end.
struct OpenFiles: ~Copyable {
    private var descriptors: [Int32: Int32] = [:]

    mutating func descriptor(_ number: Int32, of file: RestoringFile) throws -> Int32 {
        if let fd = descriptors[number] { return fd }
        let fd = try file.open()
        descriptors[number] = fd
        return fd
    }

    deinit { for fd in descriptors.values { _ = close(fd) } }
}

/// One use of a blob in a restore: where it is in its pack and where it goes in which file.
struct PlannedBlob: Sendable {
    var offset: UInt32
    var storedLength: UInt32
    var rawLength: UInt32
    var codec: Codec
    var id: Bytes32
    /// The file's number in its batch.
    var file: Int32
    var fileOffset: UInt64

    var end: UInt64 { UInt64(offset) + UInt64(storedLength) }
}

/// What one restore thread does with one pack: read the ranges holding `blobs` (sorted by
/// offset) and write each blob into every file that uses it.
struct PackJob: Sendable {
    let pack: Bytes32
    let salt: Bytes32
    let blobs: [PlannedBlob]
    let files: [RestoringFile]
    let done: DispatchGroup

    /// The byte ranges to read: consecutive blobs (by offset) in one range while the gap before
    /// the next is at most `gap` and the range stays within `limit` bytes (a blob larger than
    /// `limit` is a range of its own).
    static func ranges(_ blobs: [PlannedBlob], gap: Int, limit: Int) -> [(blobs: Range<Int>, start: UInt64, length: Int)] {
        var out: [(blobs: Range<Int>, start: UInt64, length: Int)] = []
        var first = 0
        while first < blobs.count {
            let start = UInt64(blobs[first].offset)
            var end = blobs[first].end
            var next = first + 1
            while next < blobs.count {
                let blob = blobs[next]
                let newEnd = max(end, blob.end)
                guard UInt64(blob.offset) <= end + UInt64(gap), newEnd - start <= UInt64(limit) else { break }
                end = newEnd
                next += 1
            }
            out.append((first..<next, start, Int(end - start)))
            first = next
        }
        return out
    }
}

/// Gathers the files of a restore as the tree walk reaches them and groups their blobs by
/// pack, a batch at a time: each pack a batch needs is then read once, in a few large ranges,
/// instead of once per blob (on object storage a request each). A batch is bounded in files and
/// in blob references (memory: about 100 bytes a reference); a pack that holds blobs of two
/// batches is read once for each.
struct RestorePlanner {
    let index: BlobIndex
    let maxFiles: Int
    let maxReferences: Int
    private(set) var files: [RestoringFile] = []
    private var packs: [Bytes32: Int] = [:]
    private var order: [(pack: Bytes32, salt: Bytes32, blobs: [PlannedBlob])] = []
    private(set) var references = 0

    init(index: BlobIndex, maxFiles: Int, maxReferences: Int) {
        self.index = index
        self.maxFiles = max(1, maxFiles)
        self.maxReferences = max(1, maxReferences)
    }

    var isFull: Bool { files.count >= maxFiles || references >= maxReferences }
    var isEmpty: Bool { files.isEmpty }

    /// Creates the file and plans its blobs; a file without content is returned to be
    /// finished at once (it is not kept in the batch).
    mutating func add(_ node: TreeNode, path: String) throws -> RestoringFile? {
        let content = node.content ?? []
        var located: [(id: Bytes32, location: BlobLocation)] = []
        located.reserveCapacity(content.count)
        for hex in content {
            guard let id = Bytes32(hex: hex) else { throw VaultlineError(.corrupt, "malformed blob id in tree", object: path) }
            guard let location = index.lookup(id) else { throw VaultlineError(.notFound, "blob \(id.hex) is not in the index", object: path) }
            located.append((id, location))
        }
        let file = try RestoringFile(node: node, path: path, references: located.count)
        if located.isEmpty { return file }
        let number = Int32(files.count)
        files.append(file)
        var fileOffset: UInt64 = 0
        for (id, location) in located {
            let slot: Int
            if let known = packs[location.pack] {
                slot = known
            } else {
                slot = order.count
                packs[location.pack] = slot
                order.append((location.pack, location.salt, []))
            }
            order[slot].blobs.append(PlannedBlob(
                offset: location.offset, storedLength: location.storedLength, rawLength: location.rawLength,
                codec: location.codec, id: id, file: number, fileOffset: fileOffset))
            fileOffset += UInt64(location.rawLength)
        }
        references += located.count
        return nil
    }

    /// The batch's pack jobs, in the order the walk first needed each pack, and the group
    /// they leave when done; the planner starts the next batch empty.
    mutating func seal() -> [PackJob] {
        let done = DispatchGroup()
        let batchFiles = files
        let jobs = order.map { entry in
            let sorted = entry.blobs.sorted { ($0.offset, $0.id, $0.file, $0.fileOffset) < ($1.offset, $1.id, $1.file, $1.fileOffset) }
            return PackJob(pack: entry.pack, salt: entry.salt, blobs: sorted, files: batchFiles, done: done)
        }
        for _ in jobs { done.enter() }
        files = []
        packs = [:]
        order = []
        references = 0
        return jobs
    }
}
