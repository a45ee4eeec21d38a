import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The restore threads' side: each takes one pack of a batch at a time, reads the ranges of it
/// that the batch needs and writes every blob into every file that uses it.
extension Restorer {
    /// Bytes read from a pack at once at most (a default pack is one range).
    static let largestRange = 32 << 20

    func fail(_ error: any Error) {
        shared.withLock { if $0.error == nil { $0.error = error } }
    }

    var hasFailed: Bool { shared.withLock { $0.error != nil } }

    /// Hands the batch gathered so far to the restore threads once the one before it is done
    /// (so that at most two batches are in memory at a time).
    func handOver() {
        let batch = planner.seal()
        inFlight?.wait()
        inFlight = batch.first?.done
        for job in batch { jobs.push(job) }
    }

    func packLoop() {
        let opener = BlobOpener(key: repository.key)
        var buffer: [UInt8] = []
        while let job = jobs.pop() {
            defer { job.done.leave() }
            if hasFailed { continue }
            do {
                try restorePack(job, opener: opener, buffer: &buffer)
            } catch {
                fail(error)
            }
        }
    }

    func restorePack(_ job: PackJob, opener: BlobOpener, buffer: inout [UInt8]) throws {
        let backend = repository.backend
        let name = job.pack.hex
        let blobs = job.blobs
        var open = OpenFiles()
        for range in PackJob.ranges(blobs, gap: backend.readThroughGap, limit: Self.largestRange) {
            try backend.withBytes(.pack, name, offset: Int64(range.start), length: range.length, reusing: &buffer) { bytes in
                var first = range.blobs.lowerBound
                while first < range.blobs.upperBound {
                    let blob = blobs[first]
                    // Every use of this blob (in several files, or twice in one) shares one opening.
                    var next = first + 1
                    while next < range.blobs.upperBound, blobs[next].offset == blob.offset, blobs[next].id == blob.id { next += 1 }
                    let from = Int(UInt64(blob.offset) - range.start)
                    let sealed = UnsafeRawBufferPointer(rebasing: bytes[from..<(from + Int(blob.storedLength))])
                    try opener.withOpened(sealed: sealed, id: blob.id, salt: job.salt, offset: blob.offset, codec: blob.codec,
                                          rawLength: Int(blob.rawLength), object: "packs/\(name)") { plain in
                        for use in blobs[first..<next] {
                            let file = job.files[Int(use.file)]
                            try file.write(plain, at: use.fileOffset, to: try open.descriptor(use.file, of: file))
                        }
                    }
                    for use in blobs[first..<next] where job.files[Int(use.file)].wroteReference() {
                        let file = job.files[Int(use.file)]
                        try finish(file, descriptor: try open.descriptor(use.file, of: file))
                    }
                    first = next
                }
            }
        }
    }

    /// A file whose every blob is written: its size checked, its metadata applied.
    func finish(_ file: RestoringFile, descriptor: Int32) throws {
        let written = file.written.load(ordering: .acquiring)
        if let size = file.node.size, size != written {
            throw VaultlineError(.corrupt, "restored \(written) bytes where the snapshot records \(size)", object: file.path)
        }
        try applyMetadata(file.node, fd: descriptor, path: file.path)
        let stats = shared.withLock { state -> Stats in
            state.stats.files += 1
            state.stats.bytes += written
            return state.stats
        }
        progress?(stats)
    }
}
