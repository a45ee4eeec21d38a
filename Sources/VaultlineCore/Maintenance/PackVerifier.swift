import Foundation

/// Verifies one pack's bytes, as `check --read-data` and `scrub` do.
///
/// Keyless (no key): the SHA-256 of the bytes equals the pack's name — anyone can do this,
/// site B's receiver included. Deep (with the key): also the header authenticates, and every
/// blob authenticates, decompresses and hashes (the repository's blob-id function) to its id. Deep verification goes on
/// after a hash mismatch so that it can name the damaged blobs; only when the header itself
/// cannot be read is every blob of the pack counted as damaged.
public struct PackVerifier {
    public struct Outcome: Sendable {
        /// What is wrong, or nil when the pack is intact.
        public var problem: String?
        /// Blobs found damaged (deep only).
        public var damagedBlobs: [Bytes32] = []
        /// False when the header could not be read: then every blob of the pack is lost.
        public var headerReadable = true
        public var blobsVerified = 0
    }

    let key: MasterKey?
    private let opener: BlobOpener?

    /// One verifier per thread.
    public init(key: MasterKey?) {
        self.key = key
        opener = key.map { BlobOpener(key: $0) }
    }

    public func verify(name: String, bytes: [UInt8]) -> Outcome {
        bytes.withUnsafeBytes { verify(name: name, raw: $0) }
    }

    /// The same on bytes the caller holds (a reused read buffer).
    public func verify(name: String, raw bytes: UnsafeRawBufferPointer) -> Outcome {
        var out = Outcome()
        let digest = SHA256.hash(bytes).hex
        if digest != name { out.problem = "content does not match its name (SHA-256 is \(digest.prefix(16))…)" }
        guard let key, let opener else { return out }
        let object = "packs/\(name)"
        let size = bytes.count
        guard size >= PackFormat.trailerSize + AESGCM.tagSize + 5 else {
            out.problem = "pack is too short (\(size) bytes) to hold a header"
            out.headerReadable = false
            return out
        }
        let entries: [PackEntry]
        let salt: Bytes32
        do {
            (salt, entries) = try PackReader.parse(
                trailer: Array(bytes[(size - PackFormat.trailerSize)...]), size: Int64(size), object: object, key: key
            ) { off, len in Array(bytes[Int(off)..<(Int(off) + len)]) }
        } catch {
            out.problem = Self.message(error)
            out.headerReadable = false
            return out
        }
        var firstBlobProblem: String?
        for e in entries {
            let sealed = UnsafeRawBufferPointer(rebasing: bytes[Int(e.offset)..<Int(e.offset + e.storedLength)])
            do {
                try opener.verify(
                    sealed: sealed, id: e.id, salt: salt, offset: e.offset, codec: e.codec,
                    rawLength: Int(e.rawLength), object: object)
                out.blobsVerified += 1
            } catch {
                out.damagedBlobs.append(e.id)
                if firstBlobProblem == nil { firstBlobProblem = Self.message(error) }
            }
        }
        if let firstBlobProblem {
            out.problem = "\(out.damagedBlobs.count) of \(entries.count) blobs damaged (first: \(firstBlobProblem))"
        }
        return out
    }

    static func message(_ error: any Error) -> String {
        (error as? VaultlineError)?.message ?? "\(error)"
    }
}

/// Runs `body` for every item of `items` on `workers` threads, each item once, each worker with
/// its own state from `makeState` (a ``PackVerifier`` holds a decompressor and cipher cache).
public enum ParallelWork {
    public static func forEach<Item: Sendable, State>(
        _ items: [Item], workers: Int, makeState: @Sendable () -> State, _ body: @Sendable (inout State, Item) -> Void
    ) {
        let next = Locked(0)
        let count = items.count
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, count))) { _ in
            var state = makeState()
            while true {
                let i = next.withLock { n -> Int in defer { n += 1 }; return n }
                guard i < count else { return }
                body(&state, items[i])
            }
        }
    }
}

/// Which packs a partial verification reads: a deterministic share, so that `--subset 1/5`
/// … `5/5` on five days cover every pack exactly once, and `10%` picks the same packs each time
/// until the repository changes.
public enum VerificationSubset: Sendable, Equatable, Codable {
    case all
    /// Part `part` (1-based) of `total`.
    case part(Int, of: Int)
    case percent(Double)

    /// Parses `N/T` or `P%`.
    public init(parsing text: String) throws {
        if text.hasSuffix("%"), let p = Double(text.dropLast()), p > 0, p <= 100 {
            self = .percent(p)
            return
        }
        let parts = text.split(separator: "/")
        if parts.count == 2, let n = Int(parts[0]), let t = Int(parts[1]), t >= 1, n >= 1, n <= t {
            self = .part(n, of: t)
            return
        }
        throw VaultlineError(.invalidArgument, "--subset must be N/T (1 ≤ N ≤ T) or P% (0 < P ≤ 100), not \(text)")
    }

    public func contains(_ name: String) -> Bool {
        guard let head = UInt32(name.prefix(8), radix: 16) else { return true }
        switch self {
        case .all: return true
        case let .part(n, total): return Int(head % UInt32(total)) == n - 1
        case let .percent(p): return Double(head) < p / 100 * 4_294_967_296
        }
    }
}
